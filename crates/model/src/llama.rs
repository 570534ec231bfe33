//! Llama-family decoders (SmolLM2, Llama, Qwen2) read from a GGUF file, built for
//! FM-index-constrained beam search on a CPU.
//!
//! What beam search needs is designed in:
//! - [`LlamaModel::prefill`] runs the prompt once; its keys/values are shared by every beam.
//! - [`LlamaModel::step`] runs B beams in one batch. Each beam's cache is a *path* of entry
//!   indices into one append-only key/value pool per layer, so forking and reordering beams after
//!   top-k selection copies a few indices, never key/value rows, and nothing grows by `cat`.
//! - [`LlamaModel::step_subset`] returns log-probabilities only for the token ids a beam may take.
//! - [`LlamaModel::score_continuations`] teacher-forces many short continuations of one prompt in
//!   one batch (each continuation attends to the prompt and to its own earlier tokens only).
//!
//! Every one of these runs the same row-wise forward pass: a row is a token at a position with the
//! list of cache entries it attends to. Rows never interact except through those lists, so the
//! numbers of a beam do not depend on the batch it runs in (the tests check this).
//!
//! Weights: `Q4_1` and `Q8_0` matrices stay in their GGUF blocks and go through the kernels of
//! [`crate::kernels`]: exact by default (blocks dequantized in registers, f32 products; 0.0003 nats
//! from a float64 forward pass on the golden fixture), or llama.cpp's 8-bit-activation arithmetic
//! with [`Precision::Int8Activations`]. Other GGUF types are dequantized to f32 at load. Norms,
//! RoPE, attention and softmax are f32. The K/V cache is f32 (llama.cpp's default is f16).
//!
//! Not for: tokenization ([`super::tokenizer`]), downloading ([`super::hub`]), decoding policy
//! (`seal::decode`). Runs on the CPU only: a CUDA `device` is refused with an error (the
//! `cuda` feature builds candle with CUDA, but this model's kernels are CPU kernels).

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::beams::{Attend, Network};
use crate::error::{candle_err, model_err};
use crate::gguf::GgufFile;
use crate::kernels::{ActBlock, Matrix, BLOCK};
use crate::layers::{self, apply_rope, project, rms_norm, OutPtr, RopeTable};
use crate::Result;

/// Hyper-parameters read from the GGUF metadata (`<arch>.*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture` (`llama`, `qwen2`, `mistral`).
    pub architecture: String,
    /// Transformer layers (`block_count`).
    pub block_count: usize,
    /// Model width `d` (`embedding_length`).
    pub embedding_length: usize,
    /// Hidden width of the feed-forward (`feed_forward_length`).
    pub feed_forward_length: usize,
    /// Query heads (`attention.head_count`).
    pub head_count: usize,
    /// Key/value heads (`attention.head_count_kv`; fewer than query heads with grouped-query
    /// attention).
    pub head_count_kv: usize,
    /// Size of one head (`rope.dimension_count`, else `d / head_count`).
    pub head_dim: usize,
    /// RoPE base (`rope.freq_base`).
    pub rope_freq_base: f32,
    /// RMSNorm epsilon (`attention.layer_norm_rms_epsilon`).
    pub rms_norm_eps: f32,
    /// Longest context the model was trained for (`context_length`).
    pub context_length: usize,
    /// Vocabulary size (the length of `tokenizer.ggml.tokens`).
    pub vocab_size: usize,
    /// RoPE rotates adjacent pairs (llama.cpp's "normal" mode, used by `llama` GGUFs whose Q/K
    /// weights the converter permuted) or the two halves of each head (`qwen2`, "neox" mode).
    pub rope_adjacent_pairs: bool,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V projections, stacked into one matrix when their GGUF types agree (one pass
    /// over the thread pool instead of three); the output row is `[q | k | v]`.
    qkv: Vec<Matrix>,
    /// Biases of `[q | k | v]` (Qwen2), zeros where a projection has none.
    qkv_bias: Option<Vec<f32>>,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    /// Gate and up projections, stacked likewise; output row `[gate | up]`.
    gate_up: Vec<Matrix>,
    w_down: Matrix,
}

/// A llama-family decoder with its weights in memory.
pub struct LlamaModel {
    config: LlamaConfig,
    token_embd: Matrix,
    /// `None` when the output head is tied to `token_embd` (SmolLM2).
    output: Option<Matrix>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// cos/sin of every (position, frequency) pair up to the context length, computed on demand.
    rope: std::sync::RwLock<RopeTable>,
}

pub use super::beams::{DecodeState, StepOutput};
pub use crate::layers::Precision;

impl LlamaModel {
    /// Reads a llama-family GGUF file (architectures `llama`, `qwen2`, `mistral`).
    ///
    /// # Errors
    /// The file cannot be read, is not GGUF, is another architecture, or lacks a tensor or
    /// hyper-parameter; or `device` is not the CPU.
    pub fn load(gguf: &Path, device: &Device) -> Result<Self> {
        Self::load_with_precision(gguf, device, Precision::default())
    }

    /// [`Self::load`] with a choice of arithmetic.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_with_precision(gguf: &Path, device: &Device, precision: Precision) -> Result<Self> {
        Self::load_with_overrides(gguf, device, precision, Default::default())
    }

    /// [`Self::load_with_precision`], with some tensors replaced by `overrides` (by GGUF name,
    /// same shapes), e.g. weights merged with a trained adapter ([`crate::adapter`]).
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_with_overrides(
        gguf: &Path,
        device: &Device,
        precision: Precision,
        overrides: std::collections::HashMap<String, candle_core::quantized::QTensor>,
    ) -> Result<Self> {
        if !device.is_cpu() {
            return Err(model_err(
                "the llama model runs on the CPU only in this version; load it with Device::Cpu",
            ));
        }
        Self::from_gguf(&mut GgufFile::open(gguf)?, precision, overrides)
    }

    /// Loads the model from an open GGUF file (its header already parsed).
    pub(crate) fn from_gguf(
        file: &mut GgufFile,
        precision: Precision,
        mut overrides: std::collections::HashMap<String, candle_core::quantized::QTensor>,
    ) -> Result<Self> {
        let int8 = precision == Precision::Int8Activations;
        let GgufFile { path, content, reader } = file;
        let (gguf, reader) = (path.as_path(), reader);
        let config = read_config(content, gguf)?;

        let mut tensor = |name: &str| -> Result<candle_core::quantized::QTensor> {
            if let Some(t) = overrides.remove(name) {
                return Ok(t);
            }
            content
                .tensor(reader, name, &Device::Cpu)
                .map_err(candle_err(format!("{}: cannot read tensor `{name}`", gguf.display())))
        };
        let vector = |t: candle_core::quantized::QTensor, name: &str| -> Result<Vec<f32>> {
            t.dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(candle_err(format!("cannot read tensor `{name}`")))
        };
        let matrix = |t: candle_core::quantized::QTensor, name: &str| -> Result<Matrix> {
            Matrix::from_qtensor(&t, int8)
                .map_err(candle_err(format!("cannot read tensor `{name}`")))
        };

        let token_embd = matrix(tensor("token_embd.weight")?, "token_embd.weight")?;
        if token_embd.rows != config.vocab_size || token_embd.cols != config.embedding_length {
            return Err(model_err(format!(
                "{}: token_embd.weight is {}x{}, expected {}x{}",
                gguf.display(),
                token_embd.rows,
                token_embd.cols,
                config.vocab_size,
                config.embedding_length
            )));
        }
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(matrix(tensor("output.weight")?, "output.weight")?)
        } else {
            None
        };
        let output_norm = vector(tensor("output_norm.weight")?, "output_norm.weight")?;
        let mut layers = Vec::with_capacity(config.block_count);
        for i in 0..config.block_count {
            let p = format!("blk.{i}");
            let bias = |name: &str,
                        tensor: &mut dyn FnMut(&str) -> Result<candle_core::quantized::QTensor>|
             -> Result<Option<Vec<f32>>> {
                let full = format!("{p}.{name}");
                if content.tensor_infos.contains_key(&full) {
                    Ok(Some(vector(tensor(&full)?, &full)?))
                } else {
                    Ok(None)
                }
            };
            let wq = matrix(tensor(&format!("{p}.attn_q.weight"))?, "attn_q")?;
            let wk = matrix(tensor(&format!("{p}.attn_k.weight"))?, "attn_k")?;
            let wv = matrix(tensor(&format!("{p}.attn_v.weight"))?, "attn_v")?;
            let wo = matrix(tensor(&format!("{p}.attn_output.weight"))?, "attn_output")?;
            let w_gate = matrix(tensor(&format!("{p}.ffn_gate.weight"))?, "ffn_gate")?;
            let w_up = matrix(tensor(&format!("{p}.ffn_up.weight"))?, "ffn_up")?;
            let w_down = matrix(tensor(&format!("{p}.ffn_down.weight"))?, "ffn_down")?;
            let d = config.embedding_length;
            let q_dim = config.head_count * config.head_dim;
            let kv_dim = config.head_count_kv * config.head_dim;
            let shapes = [
                (&wq, q_dim, d),
                (&wk, kv_dim, d),
                (&wv, kv_dim, d),
                (&wo, d, q_dim),
                (&w_gate, config.feed_forward_length, d),
                (&w_up, config.feed_forward_length, d),
                (&w_down, d, config.feed_forward_length),
            ];
            for (m, rows, cols) in shapes {
                if m.rows != rows || m.cols != cols {
                    return Err(model_err(format!(
                        "{}: layer {i} has a {}x{} matrix where {rows}x{cols} was expected",
                        gguf.display(),
                        m.rows,
                        m.cols
                    )));
                }
            }
            let biases = [
                (bias("attn_q.bias", &mut tensor)?, q_dim),
                (bias("attn_k.bias", &mut tensor)?, kv_dim),
                (bias("attn_v.bias", &mut tensor)?, kv_dim),
            ];
            let qkv_bias = if biases.iter().any(|(b, _)| b.is_some()) {
                let mut all = Vec::with_capacity(q_dim + 2 * kv_dim);
                for (b, len) in biases {
                    match b {
                        Some(b) if b.len() == len => all.extend(b),
                        Some(_) => {
                            return Err(model_err(format!(
                                "{}: layer {i} has a bias of the wrong size",
                                gguf.display()
                            )))
                        }
                        None => all.extend(std::iter::repeat_n(0.0, len)),
                    }
                }
                Some(all)
            } else {
                None
            };
            let layer = Layer {
                attn_norm: vector(tensor(&format!("{p}.attn_norm.weight"))?, "attn_norm")?,
                qkv: Matrix::stack(vec![wq, wk, wv]).map_or_else(|parts| parts, |m| vec![m]),
                qkv_bias,
                wo,
                ffn_norm: vector(tensor(&format!("{p}.ffn_norm.weight"))?, "ffn_norm")?,
                gate_up: Matrix::stack(vec![w_gate, w_up]).map_or_else(|parts| parts, |m| vec![m]),
                w_down,
            };
            layers.push(layer);
        }
        let mut model = LlamaModel {
            config,
            token_embd,
            output,
            output_norm,
            layers,
            rope: Default::default(),
        };
        model.pack_weights();
        Ok(model)
    }

    /// Repacks every weight matrix for the packed VNNI kernel where it runs, dropping the GGUF
    /// blocks ([`Matrix::pack`]): one copy of the weights in memory.
    fn pack_weights(&mut self) {
        self.token_embd.pack();
        if let Some(output) = &mut self.output {
            output.pack();
        }
        for l in &mut self.layers {
            l.qkv.iter_mut().chain(&mut l.gate_up).for_each(Matrix::pack);
            l.wo.pack();
            l.w_down.pack();
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Size of the vocabulary (rows of the log-softmax).
    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn head(&self) -> &Matrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    fn ensure_rope(&self, positions: usize) {
        if self.rope.read().expect("rope lock").positions >= positions {
            return;
        }
        let mut table = self.rope.write().expect("rope lock");
        if table.positions >= positions {
            return;
        }
        let n = RopeTable::size_for(positions, self.config.context_length);
        let c = &self.config;
        *table = RopeTable::new(n, c.head_dim, c.rope_freq_base, 1.0);
    }

    /// Causal attention of each row over its own list of cache entries (grouped-query heads).
    /// `q` holds row `r`'s query heads at `q[r * q_stride..]`.
    fn attention(
        &self,
        q: &[f32],
        q_stride: usize,
        keys: &[f32],
        values: &[f32],
        attend: &Attend,
        out: &mut [f32],
    ) {
        let cfg = &self.config;
        let hd = cfg.head_dim;
        let n_head = cfg.head_count;
        let group = n_head / cfg.head_count_kv;
        let kv_dim = cfg.head_count_kv * hd;
        let q_dim = n_head * hd;
        let n = attend.contiguous.len();
        let scale = 1.0 / (hd as f32).sqrt();
        let out_ptr = OutPtr(out.as_mut_ptr());
        candle_core::utils::barrier_pool().execute_chunked(n * n_head, |items| {
            let out_ptr = &out_ptr;
            let mut scores = Vec::new();
            for item in items {
                let (r, h) = (item / n_head, item % n_head);
                let g = h / group;
                let qh = &q[r * q_stride + h * hd..r * q_stride + (h + 1) * hd];
                let extra = &attend.extra[attend.extra_start[r]..attend.extra_start[r + 1]];
                // SAFETY: each (row, head) item writes its own disjoint slice of `out`.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out_ptr.0.add(r * q_dim + h * hd), hd)
                };
                layers::attend_head(
                    qh,
                    keys,
                    values,
                    kv_dim,
                    g * hd,
                    attend.contiguous[r],
                    extra,
                    scale,
                    &mut scores,
                    dst,
                );
            }
        });
    }
}

impl Network for LlamaModel {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn embedding_length(&self) -> usize {
        self.config.embedding_length
    }

    fn context_length(&self) -> usize {
        self.config.context_length
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn kv_dim(&self) -> usize {
        self.config.head_count_kv * self.config.head_dim
    }

    /// Full-vocabulary logits of `n` normalized hidden rows into `out` (`n × vocab`).
    fn head_full(&self, hidden: &[f32], n: usize, out: &mut [f32]) {
        layers::head_full(self.head(), hidden, n, out);
    }

    /// Logits of the given ids per row (same kernel and arithmetic as [`Self::head_full`]).
    fn head_ids(&self, hidden: &[f32], ids: &[&[u32]]) -> Vec<Vec<f32>> {
        layers::head_ids(self.head(), hidden, ids, |_| {})
    }

    /// The forward pass of `tokens` (one row each, at `positions`), appending their keys/values to
    /// `state`'s pool as entries `state.entries..`; returns the final-normed hidden rows.
    fn forward(
        &self,
        state: &mut DecodeState,
        tokens: &[u32],
        positions: &[usize],
        attend: &Attend,
    ) -> Vec<f32> {
        let cfg = &self.config;
        let n = tokens.len();
        let d = cfg.embedding_length;
        let hd = cfg.head_dim;
        let q_dim = cfg.head_count * hd;
        let kv_dim = cfg.head_count_kv * hd;
        let ff = cfg.feed_forward_length;
        let max_pos = positions.iter().copied().max().unwrap_or(0) + 1;
        self.ensure_rope(max_pos);
        let rope = self.rope.read().expect("rope lock");

        let qkv_dim = q_dim + 2 * kv_dim;
        let mut x = vec![0f32; n * d];
        for (r, &t) in tokens.iter().enumerate() {
            self.token_embd.dequantize_row(t as usize, &mut x[r * d..(r + 1) * d]);
        }
        let mut xn = vec![0f32; n * d];
        let kb_max = d.max(ff).max(q_dim) / BLOCK;
        let mut xq = vec![ActBlock::default(); n * kb_max];
        let mut qkv = vec![0f32; n * qkv_dim];
        let mut att = vec![0f32; n * q_dim];
        let mut gate_up = vec![0f32; n * 2 * ff];
        let mut hidden = vec![0f32; n * ff];
        let mut proj = vec![0f32; n * d];
        state.entries += n;

        for (l, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, cfg.rms_norm_eps, &mut xn);
            project(&layer.qkv, &xn, n, &mut xq, &mut qkv);
            if let Some(bias) = &layer.qkv_bias {
                add_bias(&mut qkv, bias);
            }
            for r in 0..n {
                let p = positions[r];
                let (c, s) = (
                    &rope.cos[p * hd / 2..(p + 1) * hd / 2],
                    &rope.sin[p * hd / 2..(p + 1) * hd / 2],
                );
                let row = &mut qkv[r * qkv_dim..(r + 1) * qkv_dim];
                for h in row[..q_dim + kv_dim].chunks_exact_mut(hd) {
                    apply_rope(h, c, s, cfg.rope_adjacent_pairs);
                }
                state.keys[l].extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                state.values[l].extend_from_slice(&row[q_dim + kv_dim..]);
            }
            self.attention(&qkv, qkv_dim, &state.keys[l], &state.values[l], attend, &mut att);
            project(std::slice::from_ref(&layer.wo), &att, n, &mut xq, &mut proj);
            for (a, b) in x.iter_mut().zip(&proj) {
                *a += b;
            }
            rms_norm(&x, &layer.ffn_norm, cfg.rms_norm_eps, &mut xn);
            project(&layer.gate_up, &xn, n, &mut xq, &mut gate_up);
            for (h, gu) in hidden.chunks_exact_mut(ff).zip(gate_up.chunks_exact(2 * ff)) {
                let (g, u) = gu.split_at(ff);
                layers::gated_row(layers::Gate::Silu, g, u, h);
            }
            project(std::slice::from_ref(&layer.w_down), &hidden, n, &mut xq, &mut proj);
            for (a, b) in x.iter_mut().zip(&proj) {
                *a += b;
            }
        }
        let mut out = vec![0f32; n * d];
        rms_norm(&x, &self.output_norm, cfg.rms_norm_eps, &mut out);
        out
    }
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (a, c) in row.iter_mut().zip(bias) {
            *a += c;
        }
    }
}

/// The hyper-parameters of a llama-family GGUF (also used by the trainer).
///
/// # Errors
/// Missing or inconsistent metadata.
pub fn read_config(content: &gguf_file::Content, path: &Path) -> Result<LlamaConfig> {
    let get = |key: &str| -> Result<&gguf_file::Value> {
        content.metadata.get(key).ok_or_else(|| {
            model_err(format!(
                "{}: GGUF metadata lacks `{key}`; is this a llama-family model?",
                path.display()
            ))
        })
    };
    let arch = get("general.architecture")?
        .to_string()
        .map_err(candle_err("general.architecture is not a string".into()))?
        .clone();
    if !matches!(arch.as_str(), "llama" | "qwen2" | "mistral") {
        return Err(model_err(format!(
            "{}: architecture `{arch}` is not supported by the llama-family loader (llama, qwen2, mistral)",
            path.display()
        )));
    }
    let usize_key = |key: &str| -> Result<usize> {
        let full = format!("{arch}.{key}");
        let v = get(&full)?;
        v.to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .or_else(|_| v.to_i32().map(|x| x as u64))
            .map(|x| x as usize)
            .map_err(candle_err(format!("{full} is not an integer")))
    };
    let f32_key = |key: &str| -> Result<f32> {
        let full = format!("{arch}.{key}");
        get(&full)?.to_f32().map_err(candle_err(format!("{full} is not a float")))
    };
    let head_count = usize_key("attention.head_count")?;
    let embedding_length = usize_key("embedding_length")?;
    let head_dim =
        usize_key("rope.dimension_count").unwrap_or(embedding_length / head_count.max(1));
    let vocab_size = match usize_key("vocab_size") {
        Ok(v) => v,
        Err(_) => get("tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(candle_err("tokenizer.ggml.tokens is not an array".into()))?
            .len(),
    };
    let config = LlamaConfig {
        block_count: usize_key("block_count")?,
        embedding_length,
        feed_forward_length: usize_key("feed_forward_length")?,
        head_count,
        head_count_kv: usize_key("attention.head_count_kv").unwrap_or(head_count),
        head_dim,
        rope_freq_base: f32_key("rope.freq_base").unwrap_or(10_000.0),
        rms_norm_eps: f32_key("attention.layer_norm_rms_epsilon")?,
        context_length: usize_key("context_length")?,
        vocab_size,
        rope_adjacent_pairs: arch != "qwen2",
        architecture: arch,
    };
    if config.head_count == 0
        || config.head_count_kv == 0
        || !config.head_count.is_multiple_of(config.head_count_kv)
        || !config.head_dim.is_multiple_of(2)
        || config.head_dim * config.head_count != config.embedding_length
    {
        return Err(model_err(format!(
            "{}: inconsistent attention shape in {config:?}",
            path.display()
        )));
    }
    Ok(config)
}
