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
//! [`super::ops`]: exact by default (blocks dequantized in registers, f32 products; 0.0003 nats
//! from a float64 forward pass on the golden fixture), or llama.cpp's 8-bit-activation arithmetic
//! with [`Precision::Int8Activations`]. Other GGUF types are dequantized to f32 at load. Norms,
//! RoPE, attention and softmax are f32. The K/V cache is f32 (llama.cpp's default is f16).
//!
//! Not for: tokenization ([`super::tokenizer`]), downloading ([`super::hub`]), decoding policy
//! ([`crate::decode`]). Runs on the CPU only: a CUDA `device` is refused with an error (the
//! `cuda` feature builds candle with CUDA, but this model's kernels are CPU kernels).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::ops::{self, ActBlock, Matrix, BLOCK};
use crate::{Error, ErrorKind, Result};

/// Hyper-parameters read from the GGUF metadata (`<arch>.*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture` (`llama`, `qwen2`, `mistral`).
    pub architecture: String,
    pub block_count: usize,
    pub embedding_length: usize,
    pub feed_forward_length: usize,
    pub head_count: usize,
    pub head_count_kv: usize,
    pub head_dim: usize,
    pub rope_freq_base: f32,
    pub rms_norm_eps: f32,
    pub context_length: usize,
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

/// How the matrix products are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Weights dequantized exactly, activations and products in f32: within 0.05 nats of a
    /// float64 forward pass on the golden fixture. The default. On AVX-512 VNNI CPUs the
    /// quantized products round their activations to 16 bits per block (`ops::Kernel::Avx512Int16`,
    /// 0.004 nats from float64 on the golden fixture); `SEAL_KERNELS=avx512` keeps them in f32.
    #[default]
    Exact,
    /// llama.cpp's arithmetic: activations quantized to 8 bits per block of 32, integer dot
    /// products. Faster, but up to ~1.4 nats off the exact log-probs on rare tokens (llama.cpp
    /// itself is up to ~0.9 off). Opt-in.
    Int8Activations,
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

#[derive(Default)]
struct RopeTable {
    positions: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The key/value cache of one prompt and every beam grown from it.
///
/// Entries `0..prompt_len` of each layer's pool are the prompt; every step appends one entry per
/// beam. A beam is the list of its own entries after the prompt (`paths[b]`). Cloning gives an
/// independent copy (e.g. to decode twice from one prefilled prompt).
#[derive(Clone)]
pub struct DecodeState {
    pub(super) prompt_len: usize,
    /// Per layer: keys and values, `[entry][head_count_kv * head_dim]`.
    pub(super) keys: Vec<Vec<f32>>,
    pub(super) values: Vec<Vec<f32>>,
    pub(super) entries: usize,
    pub(super) paths: Vec<Vec<u32>>,
}

impl DecodeState {
    /// Number of prompt tokens.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }
    /// Number of live beams (1 right after the prefill: the prompt itself).
    pub fn num_beams(&self) -> usize {
        self.paths.len()
    }
    /// Number of tokens after the prompt in beam `b`.
    pub fn beam_len(&self, b: usize) -> usize {
        self.paths[b].len()
    }
}

/// Log-softmax over the full vocabulary for each beam of a step, one row per beam.
pub struct StepOutput {
    pub(super) data: Vec<f32>,
    pub(super) vocab: usize,
}

impl StepOutput {
    /// The log-probabilities of beam `b` over the vocabulary.
    pub fn row(&self, b: usize) -> &[f32] {
        &self.data[b * self.vocab..(b + 1) * self.vocab]
    }
    /// Number of beams.
    pub fn num_rows(&self) -> usize {
        self.data.len().checked_div(self.vocab).unwrap_or(0)
    }
}

/// What a batch of rows attends to: row `r` sees the prompt entries `0..contiguous[r]` and then
/// the entries `extra[extra_start[r]..extra_start[r + 1]]` (which include its own new entry).
pub(super) struct Attend {
    pub(super) contiguous: Vec<usize>,
    pub(super) extra: Vec<u32>,
    pub(super) extra_start: Vec<usize>,
}

fn model_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Model, msg)
}

fn candle_err(context: String) -> impl FnOnce(candle_core::Error) -> Error {
    move |e| Error::new(ErrorKind::Model, context).with_source(e)
}

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
    /// same shapes), e.g. weights merged with a trained adapter ([`crate::train::adapter`]).
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_with_overrides(
        gguf: &Path,
        device: &Device,
        precision: Precision,
        mut overrides: std::collections::HashMap<String, candle_core::quantized::QTensor>,
    ) -> Result<Self> {
        let int8 = precision == Precision::Int8Activations;
        if !device.is_cpu() {
            return Err(model_err(
                "the llama model runs on the CPU only in this version; load it with Device::Cpu",
            ));
        }
        let file = File::open(gguf).map_err(|e| {
            Error::new(ErrorKind::Model, format!("cannot open model file {}", gguf.display()))
                .with_source(e)
        })?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(candle_err(format!("{} is not a readable GGUF file", gguf.display())))?;
        let config = read_config(&content, gguf)?;

        let mut tensor = |name: &str| -> Result<candle_core::quantized::QTensor> {
            if let Some(t) = overrides.remove(name) {
                return Ok(t);
            }
            content
                .tensor(&mut reader, name, &Device::Cpu)
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
        Ok(LlamaModel { config, token_embd, output, output_norm, layers, rope: Default::default() })
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

    fn new_state(&self, prompt_len: usize) -> DecodeState {
        let kv = self.config.head_count_kv * self.config.head_dim;
        let cap = (prompt_len + 256) * kv;
        DecodeState {
            prompt_len,
            keys: (0..self.config.block_count).map(|_| Vec::with_capacity(cap)).collect(),
            values: (0..self.config.block_count).map(|_| Vec::with_capacity(cap)).collect(),
            entries: 0,
            paths: vec![Vec::new()],
        }
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "token id {t} is outside the model's vocabulary of {}",
                    self.config.vocab_size
                ),
            ));
        }
        Ok(())
    }

    fn check_position(&self, position: usize) -> Result<()> {
        if position >= self.config.context_length {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "sequence of {} tokens exceeds the model's context length of {}; shorten the prompt",
                    position + 1,
                    self.config.context_length
                ),
            ));
        }
        Ok(())
    }

    /// Runs the prompt once. The returned state holds its cache (shared by all beams) and one
    /// beam, the prompt itself; the vector is the log-softmax over the vocabulary after the last
    /// prompt token.
    ///
    /// # Errors
    /// Empty prompt, a token outside the vocabulary, or a prompt longer than the context.
    pub fn prefill(&self, prompt: &[u32]) -> Result<(DecodeState, Vec<f32>)> {
        let (state, hidden) = self.run_prompt(prompt)?;
        let d = self.config.embedding_length;
        let mut logits = vec![0f32; self.config.vocab_size];
        self.head_full(&hidden[(prompt.len() - 1) * d..], 1, &mut logits);
        log_softmax_in_place(&mut logits);
        Ok((state, logits))
    }

    /// Continues a prefilled prompt with more prompt tokens: the returned state is the prompt
    /// `prefix + tokens` (one beam, ready for [`Self::step`]) and the vector the log-softmax
    /// after its last token. `prefix` is left untouched, so one prefilled prefix (e.g. the
    /// query-independent part of a few-shot prompt) serves many queries; only `tokens` are
    /// computed. The numbers are those of prefilling `prefix + tokens` at once (every row of a
    /// prompt attends to the same entries in the same order; the kernels are per-row).
    ///
    /// # Errors
    /// `tokens` is empty, `prefix` is not a freshly prefilled state (it has taken steps), a token
    /// is outside the vocabulary, or the whole prompt is longer than the context.
    pub fn prefill_continue(
        &self,
        prefix: &DecodeState,
        tokens: &[u32],
    ) -> Result<(DecodeState, Vec<f32>)> {
        if tokens.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "no tokens to continue the prompt with; give at least one token",
            ));
        }
        if prefix.paths.len() != 1 || !prefix.paths[0].is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "prefill_continue needs a state straight from prefill or prefill_continue, \
                 before any step",
            ));
        }
        self.check_tokens(tokens)?;
        let start = prefix.prompt_len;
        let total = start + tokens.len();
        self.check_position(total - 1)?;
        let kv = self.config.head_count_kv * self.config.head_dim;
        let grow = |pool: &Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            pool.iter()
                .map(|layer| {
                    let mut v = Vec::with_capacity((total + 256) * kv);
                    v.extend_from_slice(&layer[..start * kv]);
                    v
                })
                .collect()
        };
        let mut state = DecodeState {
            prompt_len: total,
            keys: grow(&prefix.keys),
            values: grow(&prefix.values),
            entries: start,
            paths: vec![Vec::new()],
        };
        let positions: Vec<usize> = (start..total).collect();
        let attend = Attend {
            contiguous: (start + 1..=total).collect(),
            extra: Vec::new(),
            extra_start: vec![0; tokens.len() + 1],
        };
        let hidden = self.forward(&mut state, tokens, &positions, &attend);
        let d = self.config.embedding_length;
        let mut logits = vec![0f32; self.config.vocab_size];
        self.head_full(&hidden[(tokens.len() - 1) * d..], 1, &mut logits);
        log_softmax_in_place(&mut logits);
        Ok((state, logits))
    }

    /// The prompt's forward pass in one batch: a new state holding its cache, and the final
    /// hidden rows.
    fn run_prompt(&self, prompt: &[u32]) -> Result<(DecodeState, Vec<f32>)> {
        if prompt.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the prompt is empty; give at least one token",
            ));
        }
        self.check_tokens(prompt)?;
        self.check_position(prompt.len() - 1)?;
        let mut state = self.new_state(prompt.len());
        let positions: Vec<usize> = (0..prompt.len()).collect();
        let attend = Attend {
            contiguous: (1..=prompt.len()).collect(),
            extra: Vec::new(),
            extra_start: vec![0; prompt.len() + 1],
        };
        let hidden = self.forward(&mut state, prompt, &positions, &attend);
        Ok((state, hidden))
    }

    /// The log-softmax over the vocabulary after every prompt position (row `i` predicts token
    /// `i + 1`), from the same one-batch pass as [`Self::prefill`]. For tests and diagnostics.
    ///
    /// # Errors
    /// As [`Self::prefill`].
    pub fn prompt_log_probs(&self, prompt: &[u32]) -> Result<Vec<Vec<f32>>> {
        let (_, hidden) = self.run_prompt(prompt)?;
        let d = self.config.embedding_length;
        let mut rows = Vec::with_capacity(prompt.len());
        for i in 0..prompt.len() {
            let mut logits = vec![0f32; self.config.vocab_size];
            self.head_full(&hidden[i * d..(i + 1) * d], 1, &mut logits);
            log_softmax_in_place(&mut logits);
            rows.push(logits);
        }
        Ok(rows)
    }

    /// Validates a step's arguments and computes the forward pass; returns the final hidden
    /// states (normalized), one row per beam, and updates `state` to the new beams.
    fn step_hidden(
        &self,
        state: &mut DecodeState,
        parents: &[usize],
        tokens: &[u32],
    ) -> Result<Vec<f32>> {
        if parents.len() != tokens.len() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "step got {} parents but {} tokens; give one of each per beam",
                    parents.len(),
                    tokens.len()
                ),
            ));
        }
        if let Some(&p) = parents.iter().find(|&&p| p >= state.paths.len()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "parent beam {p} does not exist (the previous step had {} beams)",
                    state.paths.len()
                ),
            ));
        }
        self.check_tokens(tokens)?;
        let base = state.entries as u32;
        let mut new_paths = Vec::with_capacity(parents.len());
        let mut positions = Vec::with_capacity(parents.len());
        for (b, &p) in parents.iter().enumerate() {
            let mut path = Vec::with_capacity(state.paths[p].len() + 1);
            path.extend_from_slice(&state.paths[p]);
            path.push(base + b as u32);
            let position = state.prompt_len + path.len() - 1;
            self.check_position(position)?;
            positions.push(position);
            new_paths.push(path);
        }
        let mut attend = Attend {
            contiguous: vec![state.prompt_len; parents.len()],
            extra: Vec::new(),
            extra_start: vec![0],
        };
        for path in &new_paths {
            attend.extra.extend_from_slice(path);
            attend.extra_start.push(attend.extra.len());
        }
        let hidden = self.forward(state, tokens, &positions, &attend);
        state.paths = new_paths;
        Ok(hidden)
    }

    /// One batched decoding step: beam `b` continues parent beam `parents[b]` of the previous
    /// step (beam 0 is the prompt right after [`Self::prefill`]) with `tokens[b]`. Any parent may
    /// be used by several beams or by none. Returns the log-softmax of each new beam.
    ///
    /// # Errors
    /// Mismatched lengths, a parent that does not exist, a token outside the vocabulary, or a
    /// sequence longer than the context.
    pub fn step(
        &self,
        state: &mut DecodeState,
        parents: &[usize],
        tokens: &[u32],
    ) -> Result<StepOutput> {
        let hidden = self.step_hidden(state, parents, tokens)?;
        let vocab = self.config.vocab_size;
        let mut data = vec![0f32; tokens.len() * vocab];
        self.head_full(&hidden, tokens.len(), &mut data);
        for row in data.chunks_exact_mut(vocab) {
            log_softmax_in_place(row);
        }
        Ok(StepOutput { data, vocab })
    }

    /// Like [`Self::step`], but returns for beam `b` only the log-probabilities of the ids in
    /// `subset[b]` (in that order). The values are exactly those of the full path: the logits of
    /// the subset come from the same kernel, and the normalizer (the log-sum-exp over the whole
    /// vocabulary) is computed exactly, since SEAL's scores are the unconstrained log-softmax.
    ///
    /// # Errors
    /// As [`Self::step`], and `subset.len() != tokens.len()` or an id outside the vocabulary.
    pub fn step_subset(
        &self,
        state: &mut DecodeState,
        parents: &[usize],
        tokens: &[u32],
        subset: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>> {
        if subset.len() != tokens.len() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("step_subset got {} subsets for {} beams", subset.len(), tokens.len()),
            ));
        }
        for s in subset {
            self.check_tokens(s)?;
        }
        let hidden = self.step_hidden(state, parents, tokens)?;
        let normalizers = self.head_logsumexp(&hidden, tokens.len());
        let ids: Vec<Vec<u32>> = subset.iter().map(|s| s.to_vec()).collect();
        let mut out = self.head_ids(&hidden, &ids);
        for (row, z) in out.iter_mut().zip(normalizers) {
            for v in row.iter_mut() {
                *v -= z;
            }
        }
        Ok(out)
    }

    /// Teacher-forced scoring: for each continuation, the log-probability of each of its tokens
    /// given the prompt and the continuation's earlier tokens. All continuations run in one batch.
    ///
    /// # Errors
    /// Empty prompt, a token outside the vocabulary, or a sequence longer than the context.
    pub fn score_continuations(
        &self,
        prompt: &[u32],
        continuations: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        let (mut state, first) = self.prefill(prompt)?;
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut attend = Attend { contiguous: Vec::new(), extra: Vec::new(), extra_start: vec![0] };
        for c in continuations {
            self.check_tokens(c)?;
            if !c.is_empty() {
                self.check_position(prompt.len() + c.len() - 1)?;
            }
            // Rows are every token but the last: row j predicts token j + 1.
            let first_entry = state.entries + tokens.len();
            for j in 0..c.len().saturating_sub(1) {
                tokens.push(c[j]);
                positions.push(prompt.len() + j);
                targets.push(c[j + 1]);
                attend.contiguous.push(prompt.len());
                attend.extra.extend((0..=j).map(|i| (first_entry + i) as u32));
                attend.extra_start.push(attend.extra.len());
            }
        }
        let normalizers;
        let target_logits;
        if tokens.is_empty() {
            normalizers = Vec::new();
            target_logits = Vec::new();
        } else {
            let hidden = self.forward(&mut state, &tokens, &positions, &attend);
            normalizers = self.head_logsumexp(&hidden, tokens.len());
            let ids: Vec<Vec<u32>> = targets.iter().map(|&t| vec![t]).collect();
            target_logits =
                self.head_ids(&hidden, &ids).into_iter().map(|v| v[0]).collect::<Vec<f32>>();
        }
        let mut row = 0;
        let mut out = Vec::with_capacity(continuations.len());
        for c in continuations {
            let mut scores = Vec::with_capacity(c.len());
            if let Some(&t0) = c.first() {
                scores.push(first[t0 as usize]);
            }
            for _ in 1..c.len() {
                scores.push(target_logits[row] - normalizers[row]);
                row += 1;
            }
            out.push(scores);
        }
        Ok(out)
    }

    /// Full-vocabulary logits of `n` normalized hidden rows into `out` (`n × vocab`).
    fn head_full(&self, hidden: &[f32], n: usize, out: &mut [f32]) {
        let head = self.head();
        let kb = head.blocks_per_row();
        let mut xq = vec![ActBlock::default(); n * kb];
        if head.wants_quantized_input() {
            for i in 0..n {
                ops::quantize_row(
                    &hidden[i * head.cols..(i + 1) * head.cols],
                    &mut xq[i * kb..(i + 1) * kb],
                );
            }
        }
        head.matmul_rows(&xq, hidden, n, 0..head.rows, out, head.rows);
    }

    /// The log-sum-exp of each row's logits over the whole vocabulary, computed in slices so
    /// that many rows never hold `n × vocab` floats at once.
    fn head_logsumexp(&self, hidden: &[f32], n: usize) -> Vec<f32> {
        let d = self.config.embedding_length;
        let vocab = self.config.vocab_size;
        let rows_per_chunk = 16;
        let mut logits = vec![0f32; rows_per_chunk.min(n) * vocab];
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(rows_per_chunk) {
            let m = rows_per_chunk.min(n - start);
            self.head_full(&hidden[start * d..(start + m) * d], m, &mut logits[..m * vocab]);
            for row in logits[..m * vocab].chunks_exact(vocab) {
                out.push(logsumexp(row));
            }
        }
        out
    }

    /// Logits of the given ids per row (same kernel and arithmetic as [`Self::head_full`]).
    fn head_ids(&self, hidden: &[f32], ids: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let head = self.head();
        let kb = head.blocks_per_row();
        let d = head.cols;
        let mut xq = vec![ActBlock::default(); kb];
        ids.iter()
            .enumerate()
            .map(|(i, ids)| {
                let x = &hidden[i * d..(i + 1) * d];
                if head.wants_quantized_input() {
                    ops::quantize_row(x, &mut xq);
                }
                let mut out = vec![0f32; ids.len()];
                head.matmul_ids(&xq, x, 0, ids, &mut out);
                out
            })
            .collect()
    }

    fn ensure_rope(&self, positions: usize) {
        if self.rope.read().expect("rope lock").positions >= positions {
            return;
        }
        let mut table = self.rope.write().expect("rope lock");
        if table.positions >= positions {
            return;
        }
        let n =
            positions.next_power_of_two().max(256).min(self.config.context_length.max(positions));
        let half = self.config.head_dim / 2;
        let base = self.config.rope_freq_base as f64;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for i in 0..half {
                // llama.cpp: theta = p * base^(-2i/d), evaluated in f32 there; f64 here is closer
                // to exact, and the difference is far below the tolerance of the golden test.
                let theta = p as f64 * base.powf(-2.0 * i as f64 / self.config.head_dim as f64);
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        *table = RopeTable { positions: n, cos, sin };
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
                for ((h, &g), &u) in h.iter_mut().zip(g).zip(u) {
                    *h = g / (1.0 + (-g).exp()) * u;
                }
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
                ops::attend_head(
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

pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: only used to give pool workers disjoint output slices.
unsafe impl Sync for OutPtr {}
unsafe impl Send for OutPtr {}

/// `out[i]` = the concatenated products of every matrix in `parts` with input row `i` of `x`
/// (`n` rows); `xq` is scratch for the quantized input.
pub(super) fn project(parts: &[Matrix], x: &[f32], n: usize, xq: &mut [ActBlock], out: &mut [f32]) {
    let cols = parts[0].cols;
    let total: usize = parts.iter().map(|m| m.rows).sum();
    if parts.iter().any(Matrix::wants_quantized_input) {
        let kb = cols / BLOCK;
        for i in 0..n {
            ops::quantize_row(&x[i * cols..(i + 1) * cols], &mut xq[i * kb..(i + 1) * kb]);
        }
    }
    let mut offset = 0;
    for m in parts {
        m.matmul_rows(xq, x, n, 0..m.rows, &mut out[offset..], total);
        offset += m.rows;
    }
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (a, c) in row.iter_mut().zip(bias) {
            *a += c;
        }
    }
}

pub(super) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * s * w;
        }
    }
}

pub(super) fn apply_rope(h: &mut [f32], cos: &[f32], sin: &[f32], adjacent_pairs: bool) {
    let half = h.len() / 2;
    for i in 0..half {
        let (a, b) = if adjacent_pairs { (2 * i, 2 * i + 1) } else { (i, i + half) };
        let (x0, x1) = (h[a], h[b]);
        h[a] = x0 * cos[i] - x1 * sin[i];
        h[b] = x0 * sin[i] + x1 * cos[i];
    }
}

/// log Σ exp(x), stable ([`ops::logsumexp_row`]).
pub fn logsumexp(x: &[f32]) -> f32 {
    ops::logsumexp_row(x)
}

pub(super) fn log_softmax_in_place(x: &mut [f32]) {
    let z = logsumexp(x);
    for v in x.iter_mut() {
        *v -= z;
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
