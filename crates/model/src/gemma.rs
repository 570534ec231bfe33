//! Gemma 3 decoders (e.g. Gemma-3-270M) read from a GGUF file, built for FM-index-constrained
//! beam search on a CPU, with the same API and cache as [`super::llama::LlamaModel`].
//!
//! What beam search needs is the llama model's design, shared with it: the cache is a
//! [`DecodeState`] (one append-only key/value pool per layer, a beam is a path of entry indices,
//! so forking and reordering copy indices), rows only interact through the entries they attend to
//! (so a beam's numbers do not depend on its batch), and the matrix products are the kernels of
//! [`crate::kernels`] (exact: blocks decoded in registers, f32 products).
//!
//! What is Gemma 3's own (checked against llama.cpp's `gemma3` graph and a float64 reference):
//! - the token embedding is scaled by √d; the output head is the embedding (tied);
//! - RMSNorm weights are used as stored (the GGUF converter already added Gemma's `1 +`);
//! - four norms per layer: before and after attention, before and after the feed-forward;
//! - per-head RMSNorm of queries and keys before RoPE ("neox" halves layout);
//! - attention scale `1/√head_dim` (llama.cpp's choice for every size but 27B);
//! - layers alternate: five sliding-window layers (window from `gemma3.attention.sliding_window`,
//!   RoPE base 10,000) then one global layer (RoPE base `gemma3.rope.freq_base`, linear
//!   `rope.scaling.factor` when present);
//! - a GELU(tanh)-gated feed-forward; a final logit soft-cap when the file declares one.
//!
//! Weights: `Q8_0` stays as is; `Q5_0` and `Q4_K` are re-encoded losslessly into `Q8_0`/`Q4_1`
//! blocks ([`super::requant`]); `Q6_K` and other types are dequantized to f32 at load. The K/V
//! cache, norms, RoPE, attention and softmax are f32.
//!
//! Not for: tokenization ([`super::tokenizer`]), downloading ([`super::hub`]), decoding policy
//! (`seal::decode`). CPU only.

use std::path::Path;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::Device;

use super::beams::{Attend, DecodeState, Network};
use super::requant;
use crate::error::{candle_err, model_err};
use crate::gguf::GgufFile;
use crate::kernels::{self, ActBlock, Matrix, BLOCK};
use crate::layers::{self, apply_rope, project, rms_norm, OutPtr, Precision, RopeTable};
use crate::Result;

/// Hyper-parameters read from the GGUF metadata (`gemma3.*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct GemmaConfig {
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
    /// `attention.key_length` (= `value_length`); 256 for Gemma-3-270M, not `d / heads`.
    pub head_dim: usize,
    /// RMSNorm epsilon (`attention.layer_norm_rms_epsilon`).
    pub rms_norm_eps: f32,
    /// Longest context the model was trained for (`context_length`).
    pub context_length: usize,
    /// Vocabulary size (the length of `tokenizer.ggml.tokens`).
    pub vocab_size: usize,
    /// RoPE base of the global layers (`rope.freq_base`).
    pub rope_freq_base: f32,
    /// RoPE position scale of the global layers (1 / `rope.scaling.factor` for linear scaling).
    pub rope_freq_scale: f32,
    /// RoPE base of the sliding-window layers (10,000 in every Gemma 3).
    pub rope_freq_base_local: f32,
    /// A row at position `p` of a sliding layer sees positions `p - window + 1 ..= p`.
    pub sliding_window: usize,
    /// Every `sliding_window_pattern`-th layer is global (6: layers 5, 11, 17, …).
    pub sliding_window_pattern: usize,
    /// Multiplies the query before the dot products.
    pub attention_scale: f32,
    /// `cap · tanh(logit / cap)` on the output logits when set.
    pub final_logit_softcapping: Option<f32>,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V stacked when their kinds agree; the output row is `[q | k | v]`.
    qkv: Vec<Matrix>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Matrix,
    post_attention_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    /// Gate and up stacked likewise; output row `[gate | up]`.
    gate_up: Vec<Matrix>,
    w_down: Matrix,
    post_ffw_norm: Vec<f32>,
    /// Sliding-window layer (local RoPE base, windowed attention) or global layer.
    sliding: bool,
}

/// A Gemma 3 decoder with its weights in memory.
pub struct GemmaModel {
    config: GemmaConfig,
    /// The embedding and (tied) output head, `vocab × d`.
    token_embd: Matrix,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// cos/sin per (position, frequency) for the local (`[0]`) and global (`[1]`) layers.
    rope: std::sync::RwLock<[RopeTable; 2]>,
}

impl GemmaModel {
    /// Reads a Gemma 3 GGUF file (`general.architecture = gemma3`).
    ///
    /// # Errors
    /// The file cannot be read, is not GGUF, is another architecture, or lacks a tensor or
    /// hyper-parameter; or `device` is not the CPU.
    pub fn load(gguf: &Path, device: &Device) -> Result<Self> {
        Self::load_with_precision(gguf, device, Precision::default())
    }

    /// [`Self::load`] with a choice of arithmetic for the quantized products.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_with_precision(gguf: &Path, device: &Device, precision: Precision) -> Result<Self> {
        if !device.is_cpu() {
            return Err(model_err(
                "the Gemma model runs on the CPU only in this version; load it with Device::Cpu",
            ));
        }
        Self::from_gguf(&mut GgufFile::open(gguf)?, precision)
    }

    /// Loads the model from an open GGUF file (its header already parsed).
    pub(crate) fn from_gguf(file: &mut GgufFile, precision: Precision) -> Result<Self> {
        let int8 = precision == Precision::Int8Activations;
        let GgufFile { path, content, reader } = file;
        let (gguf, reader) = (path.as_path(), reader);
        let config = read_config(content, gguf)?;

        let mut tensor = |name: &str| -> Result<QTensor> {
            content
                .tensor(reader, name, &Device::Cpu)
                .map_err(candle_err(format!("{}: cannot read tensor `{name}`", gguf.display())))
        };
        let vector = |t: QTensor, name: &str, len: usize| -> Result<Vec<f32>> {
            let v = t
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(candle_err(format!("cannot read tensor `{name}`")))?;
            if v.len() != len {
                return Err(model_err(format!(
                    "{}: `{name}` has {} values, expected {len}",
                    gguf.display(),
                    v.len()
                )));
            }
            Ok(v)
        };
        let matrix = |t: QTensor, name: &str, rows: usize, cols: usize| -> Result<Matrix> {
            let m = requant::matrix(&t, int8)
                .map_err(candle_err(format!("cannot read tensor `{name}`")))?;
            if m.rows != rows || m.cols != cols {
                return Err(model_err(format!(
                    "{}: `{name}` is {}x{}, expected {rows}x{cols}",
                    gguf.display(),
                    m.rows,
                    m.cols
                )));
            }
            Ok(m)
        };

        let c = &config;
        let d = c.embedding_length;
        let (hd, ff) = (c.head_dim, c.feed_forward_length);
        let q_dim = c.head_count * hd;
        let kv_dim = c.head_count_kv * hd;
        if content.tensor_infos.contains_key("output.weight") {
            return Err(model_err(format!(
                "{}: this Gemma file has a separate output.weight; only tied heads are supported",
                gguf.display()
            )));
        }
        let token_embd =
            matrix(tensor("token_embd.weight")?, "token_embd.weight", c.vocab_size, d)?;
        let output_norm = vector(tensor("output_norm.weight")?, "output_norm.weight", d)?;
        let mut layers = Vec::with_capacity(c.block_count);
        for i in 0..c.block_count {
            let mut m = |name: &str, rows: usize, cols: usize| -> Result<Matrix> {
                let full = format!("blk.{i}.{name}.weight");
                matrix(tensor(&full)?, &full, rows, cols)
            };
            let wq = m("attn_q", q_dim, d)?;
            let wk = m("attn_k", kv_dim, d)?;
            let wv = m("attn_v", kv_dim, d)?;
            let wo = m("attn_output", d, q_dim)?;
            let w_gate = m("ffn_gate", ff, d)?;
            let w_up = m("ffn_up", ff, d)?;
            let w_down = m("ffn_down", d, ff)?;
            let mut v = |name: &str, len: usize| -> Result<Vec<f32>> {
                let full = format!("blk.{i}.{name}.weight");
                vector(tensor(&full)?, &full, len)
            };
            layers.push(Layer {
                attn_norm: v("attn_norm", d)?,
                qkv: Matrix::stack(vec![wq, wk, wv]).map_or_else(|parts| parts, |m| vec![m]),
                q_norm: v("attn_q_norm", hd)?,
                k_norm: v("attn_k_norm", hd)?,
                wo,
                post_attention_norm: v("post_attention_norm", d)?,
                ffn_norm: v("ffn_norm", d)?,
                gate_up: Matrix::stack(vec![w_gate, w_up]).map_or_else(|parts| parts, |m| vec![m]),
                w_down,
                post_ffw_norm: v("post_ffw_norm", d)?,
                sliding: (i + 1) % c.sliding_window_pattern != 0,
            });
        }
        let mut model =
            GemmaModel { config, token_embd, output_norm, layers, rope: Default::default() };
        model.pack_weights();
        Ok(model)
    }

    /// Repacks every weight matrix for the packed VNNI kernel where it runs, dropping the GGUF
    /// blocks ([`Matrix::pack`]).
    fn pack_weights(&mut self) {
        self.token_embd.pack();
        for l in &mut self.layers {
            l.qkv.iter_mut().chain(&mut l.gate_up).for_each(Matrix::pack);
            l.wo.pack();
            l.w_down.pack();
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &GemmaConfig {
        &self.config
    }

    /// Size of the vocabulary (rows of the log-softmax).
    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn soft_cap(&self, logits: &mut [f32]) {
        if let Some(cap) = self.config.final_logit_softcapping {
            for v in logits {
                *v = cap * (*v / cap).tanh();
            }
        }
    }

    fn ensure_rope(&self, positions: usize) {
        if self.rope.read().expect("rope lock")[0].positions >= positions {
            return;
        }
        let mut tables = self.rope.write().expect("rope lock");
        if tables[0].positions >= positions {
            return;
        }
        let c = &self.config;
        let n = RopeTable::size_for(positions, c.context_length);
        let kinds = [(c.rope_freq_base_local, 1.0f32), (c.rope_freq_base, c.rope_freq_scale)];
        for (table, (base, scale)) in tables.iter_mut().zip(kinds) {
            *table = RopeTable::new(n, c.head_dim, base, scale);
        }
    }

    /// Causal attention of each row over its own list of cache entries (grouped-query heads),
    /// limited to the last `window` of them on sliding layers. `q` holds row `r`'s query heads at
    /// `q[r * q_stride..]`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &[f32],
        q_stride: usize,
        keys: &[f32],
        values: &[f32],
        attend: &Attend,
        window: Option<usize>,
        out: &mut [f32],
    ) {
        let c = &self.config;
        let hd = c.head_dim;
        let n_head = c.head_count;
        let group = n_head / c.head_count_kv;
        let kv_dim = c.head_count_kv * hd;
        let q_dim = n_head * hd;
        let n = attend.contiguous.len();
        let scale = c.attention_scale;
        let out_ptr = OutPtr(out.as_mut_ptr());
        candle_core::utils::barrier_pool().execute_chunked(n * n_head, |items| {
            let out_ptr = &out_ptr;
            let mut scores = Vec::new();
            let mut acc = vec![0f32; hd];
            for item in items {
                let (r, h) = (item / n_head, item % n_head);
                let g = h / group;
                let qh = &q[r * q_stride + h * hd..r * q_stride + (h + 1) * hd];
                let extra = &attend.extra[attend.extra_start[r]..attend.extra_start[r + 1]];
                let contiguous = attend.contiguous[r];
                let entry = |i: usize| -> usize {
                    if i < contiguous {
                        i
                    } else {
                        extra[i - contiguous] as usize
                    }
                };
                let len = contiguous + extra.len();
                // The i-th visible entry is at position i (see `forward`); the row is at len - 1.
                let first = window.map_or(0, |w| len.saturating_sub(w));
                scores.clear();
                let mut max = f32::NEG_INFINITY;
                for i in first..len {
                    let e = entry(i);
                    let kv = &keys[e * kv_dim + g * hd..e * kv_dim + (g + 1) * hd];
                    let s = kernels::dot_f32(qh, kv) * scale;
                    max = max.max(s);
                    scores.push(s);
                }
                let mut sum = 0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (k, &w) in scores.iter().enumerate() {
                    let e = entry(first + k);
                    let vv = &values[e * kv_dim + g * hd..e * kv_dim + (g + 1) * hd];
                    for (a, &x) in acc.iter_mut().zip(vv) {
                        *a += w * x;
                    }
                }
                let inv = 1.0 / sum;
                // SAFETY: each (row, head) item writes its own disjoint slice of `out`.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out_ptr.0.add(r * q_dim + h * hd), hd)
                };
                for (o, a) in dst.iter_mut().zip(&acc) {
                    *o = a * inv;
                }
            }
        });
    }
}

impl Network for GemmaModel {
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
        layers::head_full(&self.token_embd, hidden, n, out);
        self.soft_cap(&mut out[..n * self.token_embd.rows]);
    }

    /// Logits of the given ids per row (same kernel and arithmetic as [`Self::head_full`]).
    fn head_ids(&self, hidden: &[f32], ids: &[&[u32]]) -> Vec<Vec<f32>> {
        layers::head_ids(&self.token_embd, hidden, ids, |logits| self.soft_cap(logits))
    }

    /// The forward pass of `tokens` (one row each, at `positions`), appending their keys/values to
    /// `state`'s pool as entries `state.entries..`; returns the final-normed hidden rows.
    ///
    /// In every [`Attend`] this model builds, the `i`-th entry a row sees is at position `i`
    /// (the prompt is entries `0..prompt_len`, then the row's own path), which is what the
    /// sliding window relies on.
    fn forward(
        &self,
        state: &mut DecodeState,
        tokens: &[u32],
        positions: &[usize],
        attend: &Attend,
    ) -> Vec<f32> {
        let c = &self.config;
        let n = tokens.len();
        let d = c.embedding_length;
        let hd = c.head_dim;
        let q_dim = c.head_count * hd;
        let kv_dim = self.kv_dim();
        let ff = c.feed_forward_length;
        let max_pos = positions.iter().copied().max().unwrap_or(0) + 1;
        self.ensure_rope(max_pos);
        let rope = self.rope.read().expect("rope lock");

        let qkv_dim = q_dim + 2 * kv_dim;
        let embed_scale = (d as f32).sqrt();
        let mut x = vec![0f32; n * d];
        for (r, &t) in tokens.iter().enumerate() {
            let row = &mut x[r * d..(r + 1) * d];
            self.token_embd.dequantize_row(t as usize, row);
            row.iter_mut().for_each(|v| *v *= embed_scale);
        }
        let mut xn = vec![0f32; n * d];
        let kb_max = d.max(ff).max(q_dim) / BLOCK;
        let mut xq = vec![ActBlock::default(); n * kb_max];
        let mut qkv = vec![0f32; n * qkv_dim];
        let mut att = vec![0f32; n * q_dim];
        let mut gate_up = vec![0f32; n * 2 * ff];
        let mut hidden = vec![0f32; n * ff];
        let mut proj = vec![0f32; n * d];
        let mut head_tmp = vec![0f32; hd];
        state.entries += n;

        for (l, layer) in self.layers.iter().enumerate() {
            let table = &rope[usize::from(!layer.sliding)];
            rms_norm(&x, &layer.attn_norm, c.rms_norm_eps, &mut xn);
            project(&layer.qkv, &xn, n, &mut xq, &mut qkv);
            for r in 0..n {
                let p = positions[r];
                let (cos, sin) = (
                    &table.cos[p * hd / 2..(p + 1) * hd / 2],
                    &table.sin[p * hd / 2..(p + 1) * hd / 2],
                );
                let row = &mut qkv[r * qkv_dim..(r + 1) * qkv_dim];
                for (h, head) in row[..q_dim + kv_dim].chunks_exact_mut(hd).enumerate() {
                    let weight = if h < c.head_count { &layer.q_norm } else { &layer.k_norm };
                    head_tmp.copy_from_slice(head);
                    rms_norm(&head_tmp, weight, c.rms_norm_eps, head);
                    apply_rope(head, cos, sin, false);
                }
                state.keys[l].extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                state.values[l].extend_from_slice(&row[q_dim + kv_dim..]);
            }
            let window = layer.sliding.then_some(c.sliding_window);
            self.attention(
                &qkv,
                qkv_dim,
                &state.keys[l],
                &state.values[l],
                attend,
                window,
                &mut att,
            );
            project(std::slice::from_ref(&layer.wo), &att, n, &mut xq, &mut proj);
            rms_norm(&proj, &layer.post_attention_norm, c.rms_norm_eps, &mut xn);
            for (a, b) in x.iter_mut().zip(&xn) {
                *a += b;
            }
            rms_norm(&x, &layer.ffn_norm, c.rms_norm_eps, &mut xn);
            project(&layer.gate_up, &xn, n, &mut xq, &mut gate_up);
            for (h, gu) in hidden.chunks_exact_mut(ff).zip(gate_up.chunks_exact(2 * ff)) {
                let (g, u) = gu.split_at(ff);
                layers::gated_row(layers::Gate::GeluTanh, g, u, h);
            }
            project(std::slice::from_ref(&layer.w_down), &hidden, n, &mut xq, &mut proj);
            rms_norm(&proj, &layer.post_ffw_norm, c.rms_norm_eps, &mut xn);
            for (a, b) in x.iter_mut().zip(&xn) {
                *a += b;
            }
        }
        let mut out = vec![0f32; n * d];
        rms_norm(&x, &self.output_norm, c.rms_norm_eps, &mut out);
        out
    }
}

fn read_config(content: &gguf_file::Content, path: &Path) -> Result<GemmaConfig> {
    let get = |key: &str| -> Result<&gguf_file::Value> {
        content.metadata.get(key).ok_or_else(|| {
            model_err(format!(
                "{}: GGUF metadata lacks `{key}`; is this a Gemma 3 model?",
                path.display()
            ))
        })
    };
    let arch = get("general.architecture")?
        .to_string()
        .map_err(candle_err("general.architecture is not a string".into()))?
        .clone();
    if arch != "gemma3" {
        return Err(model_err(format!(
            "{}: architecture `{arch}` is not supported by the Gemma 3 loader",
            path.display()
        )));
    }
    let int = |v: &gguf_file::Value| -> Option<usize> {
        v.to_u64()
            .ok()
            .or_else(|| v.to_u32().ok().map(u64::from))
            .or_else(|| v.to_i32().ok().map(|x| x as u64))
            .map(|x| x as usize)
    };
    let usize_key = |key: &str| -> Result<usize> {
        let full = format!("gemma3.{key}");
        int(get(&full)?).ok_or_else(|| model_err(format!("{full} is not an integer")))
    };
    let f32_key = |key: &str| -> Option<f32> {
        content.metadata.get(&format!("gemma3.{key}")).and_then(|v| v.to_f32().ok())
    };
    let head_count = usize_key("attention.head_count")?;
    let embedding_length = usize_key("embedding_length")?;
    let head_dim =
        usize_key("attention.key_length").unwrap_or(embedding_length / head_count.max(1));
    if let Ok(v) = usize_key("attention.value_length") {
        if v != head_dim {
            return Err(model_err(format!(
                "{}: key length {head_dim} differs from value length {v}; not supported",
                path.display()
            )));
        }
    }
    let vocab_size = match usize_key("vocab_size") {
        Ok(v) => v,
        Err(_) => get("tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(candle_err("tokenizer.ggml.tokens is not an array".into()))?
            .len(),
    };
    let scaling = content
        .metadata
        .get("gemma3.rope.scaling.type")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "none".into());
    let rope_freq_scale = match (scaling.as_str(), f32_key("rope.scaling.factor")) {
        ("none", _) | (_, None) => 1.0,
        ("linear", Some(f)) if f > 0.0 => 1.0 / f,
        (other, _) => {
            return Err(model_err(format!(
                "{}: RoPE scaling `{other}` is not supported (none, linear)",
                path.display()
            )))
        }
    };
    let config = GemmaConfig {
        block_count: usize_key("block_count")?,
        embedding_length,
        feed_forward_length: usize_key("feed_forward_length")?,
        head_count,
        head_count_kv: usize_key("attention.head_count_kv").unwrap_or(head_count),
        head_dim,
        rms_norm_eps: f32_key("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
        context_length: usize_key("context_length")?,
        vocab_size,
        rope_freq_base: f32_key("rope.freq_base").unwrap_or(1_000_000.0),
        rope_freq_scale,
        rope_freq_base_local: 10_000.0,
        sliding_window: usize_key("attention.sliding_window")?,
        sliding_window_pattern: 6,
        attention_scale: 1.0 / (head_dim as f32).sqrt(),
        final_logit_softcapping: f32_key("final_logit_softcapping").filter(|&c| c > 0.0),
    };
    if config.head_count == 0
        || config.head_count_kv == 0
        || !config.head_count.is_multiple_of(config.head_count_kv)
        || !config.head_dim.is_multiple_of(2)
        || config.sliding_window == 0
        || !config.embedding_length.is_multiple_of(BLOCK)
    {
        return Err(model_err(format!(
            "{}: inconsistent attention shape in {config:?}",
            path.display()
        )));
    }
    Ok(config)
}
