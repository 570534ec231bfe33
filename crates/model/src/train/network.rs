//! The network being trained: a llama-family decoder whose bottom layers are frozen and whose
//! top `k` layers (and final norm) are trained, with hand-written forward and backward passes.
//!
//! Parameters live in two flat vectors: the frozen bottom layers, and the trained top layers
//! followed by the final norm's weight ([`Network::params`]); gradients have the trained
//! vector's layout, so the optimizer and checkpoints see flat slices. The embedding and the
//! vocabulary head are frozen (tied in SmolLM2). Tensors are named as in GGUF
//! (`blk.3.attn_q.weight`), split back from the stacked `[q; k; v]` and `[gate; up]` blocks.

use std::ops::Range;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::attention::Heads;
use super::batch::PackedBatch;
use super::head::{self, Head};
use super::layer::{self, Dims};
use super::pointwise::RopeTable;
use super::real::Real;
use crate::llama::{read_config, LlamaConfig};
use crate::{Error, ErrorKind, Result};

/// A named tensor: GGUF name, shape (rows, cols or just len), `f32` values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// A llama decoder with its top layers trainable.
pub struct Network<T> {
    config: LlamaConfig,
    dims: Dims,
    first_trained: usize,
    embed: Vec<T>,
    output: Option<Vec<T>>,
    frozen: Vec<T>,
    params: Vec<T>,
    rope: RopeTable<T>,
}

fn model_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Model, msg)
}

/// The GGUF tensors of layer `l`, in the order they are stacked in the flat layout, with
/// their row counts (every one has `cols` columns except where noted by the caller).
fn layer_tensor_names(l: usize) -> [String; 9] {
    [
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ]
    .map(|n| format!("blk.{l}.{n}.weight"))
}

impl<T: Real> Network<T> {
    /// Builds the network from a source of named dense tensors (row-major values), training
    /// the top `trained_layers` layers (`1..=block_count`).
    ///
    /// # Errors
    /// A missing tensor, a tensor of the wrong size, biases (Qwen2-style, not supported), or
    /// an out-of-range layer count.
    pub fn from_tensors(
        config: LlamaConfig,
        trained_layers: usize,
        mut tensor: impl FnMut(&str) -> Result<Option<Vec<f64>>>,
    ) -> Result<Self> {
        let n = config.block_count;
        if trained_layers == 0 || trained_layers > n {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("the model has {n} layers: train between 1 and {n} of them"),
            ));
        }
        let dims = Dims {
            d: config.embedding_length,
            f: config.feed_forward_length,
            heads: Heads { q: config.head_count, kv: config.head_count_kv, dim: config.head_dim },
            eps: config.rms_norm_eps as f64,
        };
        fn need<T: Real>(
            tensor: &mut impl FnMut(&str) -> Result<Option<Vec<f64>>>,
            name: &str,
            len: usize,
        ) -> Result<Vec<T>> {
            let v = tensor(name)?.ok_or_else(|| model_err(format!("the model lacks `{name}`")))?;
            if v.len() != len {
                return Err(model_err(format!("`{name}` has {} values, expected {len}", v.len())));
            }
            Ok(v.into_iter().map(T::of).collect())
        }
        let d = dims.d;
        let embed = need(&mut tensor, "token_embd.weight", config.vocab_size * d)?;
        let output = match tensor("output.weight")? {
            Some(v) if v.len() == config.vocab_size * d => Some(v.into_iter().map(T::of).collect()),
            Some(_) => return Err(model_err("`output.weight` has the wrong size")),
            None => None,
        };
        let (q, kv, f) = (dims.heads.out_width(), dims.heads.kv * dims.heads.dim, dims.f);
        let sizes = [d, q * d, kv * d, kv * d, d * q, d, f * d, f * d, d * f];
        let first_trained = n - trained_layers;
        let mut frozen = Vec::with_capacity(first_trained * dims.layer_len());
        let mut params = Vec::with_capacity(trained_layers * dims.layer_len() + d);
        for l in 0..n {
            for bias in ["attn_q.bias", "attn_k.bias", "attn_v.bias"] {
                if tensor(&format!("blk.{l}.{bias}"))?.is_some() {
                    return Err(model_err(
                        "this model has attention biases (Qwen2-style); the trainer supports \
                         llama-style layers without biases",
                    ));
                }
            }
            let dst = if l < first_trained { &mut frozen } else { &mut params };
            for (name, len) in layer_tensor_names(l).iter().zip(sizes) {
                dst.extend(need::<T>(&mut tensor, name, len)?);
            }
        }
        params.extend(need::<T>(&mut tensor, "output_norm.weight", d)?);
        let rope = RopeTable::new(
            config.context_length.max(1),
            dims.heads.dim,
            config.rope_freq_base as f64,
            config.rope_adjacent_pairs,
        );
        Ok(Network { config, dims, first_trained, embed, output, frozen, params, rope })
    }

    /// Reads a llama-family GGUF file, dequantizing every tensor.
    ///
    /// # Errors
    /// The file cannot be read, is not a llama-family GGUF, or as [`Self::from_tensors`].
    pub fn from_gguf(path: &Path, trained_layers: usize) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot open model file {}", path.display()))
                .with_source(e)
        })?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| {
            model_err(format!("{} is not a readable GGUF file", path.display())).with_source(e)
        })?;
        let config = read_config(&content, path)?;
        Self::from_tensors(config, trained_layers, |name| {
            if !content.tensor_infos.contains_key(name) {
                return Ok(None);
            }
            let values = content
                .tensor(&mut file, name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| model_err(format!("cannot read `{name}`")).with_source(e))?;
            Ok(Some(values.into_iter().map(f64::from).collect()))
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Index of the first trained layer (the layers below it are frozen).
    pub fn first_trained(&self) -> usize {
        self.first_trained
    }

    /// The trained parameters (top layers, then the final norm), flat.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// [`Self::params`], mutable.
    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    fn layer_params<'a>(&self, flat: &'a [T], l: usize) -> &'a [T] {
        let len = self.dims.layer_len();
        let i = if l < self.first_trained { l } else { l - self.first_trained };
        &flat[i * len..(i + 1) * len]
    }

    fn final_norm(&self) -> &[T] {
        &self.params[self.params.len() - self.dims.d..]
    }

    fn check(&self, batch: &PackedBatch) -> Result<()> {
        if let Some(&t) = batch
            .tokens
            .iter()
            .chain(&batch.loss_targets)
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("token id {t} is outside the vocabulary of {}", self.config.vocab_size),
            ));
        }
        if batch.max_len() > self.rope.len() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a training sequence of {} tokens exceeds the context length of {}",
                    batch.max_len(),
                    self.rope.len()
                ),
            ));
        }
        Ok(())
    }

    /// The input rows of the first trained layer: the embeddings run through the frozen
    /// layers. Depends only on the batch's tokens, so it can be computed once and cached.
    ///
    /// # Errors
    /// A token outside the vocabulary or a sequence longer than the context.
    pub fn bottom(&self, batch: &PackedBatch) -> Result<Vec<T>> {
        self.check(batch)?;
        let d = self.dims.d;
        let mut x = Vec::with_capacity(batch.rows() * d);
        for &t in &batch.tokens {
            x.extend_from_slice(&self.embed[t as usize * d..(t as usize + 1) * d]);
        }
        for l in 0..self.first_trained {
            let w = self.dims.split(self.layer_params(&self.frozen, l));
            x = layer::forward(&self.dims, &w, x, batch, &self.rope, false).0;
        }
        Ok(x)
    }

    fn head(&self) -> Head<'_, T> {
        Head {
            weight: self.output.as_deref().unwrap_or(&self.embed),
            d: self.dims.d,
            eps: self.dims.eps,
        }
    }

    /// The batch's loss: `(Σ wᵢ·lossᵢ, Σ wᵢ)` (the mean is their ratio). `bottom` is
    /// [`Self::bottom`] of the batch, if already computed.
    ///
    /// # Errors
    /// As [`Self::bottom`].
    pub fn loss(&self, batch: &PackedBatch, bottom: Option<Vec<T>>) -> Result<(f64, f64)> {
        let mut x = match bottom {
            Some(x) => x,
            None => self.bottom(batch)?,
        };
        for l in self.first_trained..self.config.block_count {
            let w = self.dims.split(self.layer_params(&self.params, l));
            x = layer::forward(&self.dims, &w, x, batch, &self.rope, false).0;
        }
        Ok(head::loss(&self.head(), self.final_norm(), &x, batch, None, None))
    }

    /// `log p(target)` of every loss entry of the batch, in order (no gradients).
    ///
    /// # Errors
    /// As [`Self::bottom`].
    pub fn target_log_probs(&self, batch: &PackedBatch) -> Result<Vec<f64>> {
        let mut x = self.bottom(batch)?;
        for l in self.first_trained..self.config.block_count {
            let w = self.dims.split(self.layer_params(&self.params, l));
            x = layer::forward(&self.dims, &w, x, batch, &self.rope, false).0;
        }
        let mut out = Vec::with_capacity(batch.loss_rows.len());
        head::loss(&self.head(), self.final_norm(), &x, batch, None, Some(&mut out));
        Ok(out)
    }

    /// The batch's loss as [`Self::loss`], and the gradient of the mean loss added into
    /// `grads` (the layout of [`Self::params`]).
    ///
    /// # Errors
    /// As [`Self::bottom`].
    ///
    /// # Panics
    /// `grads` is not as long as the parameters.
    pub fn loss_and_grad(
        &self,
        batch: &PackedBatch,
        bottom: Option<Vec<T>>,
        grads: &mut [T],
    ) -> Result<(f64, f64)> {
        assert_eq!(grads.len(), self.params.len());
        if batch.loss_rows.is_empty() {
            return Ok((0.0, 0.0));
        }
        let mut x = match bottom {
            Some(x) => x,
            None => self.bottom(batch)?,
        };
        let mut saved = Vec::with_capacity(self.config.block_count - self.first_trained);
        for l in self.first_trained..self.config.block_count {
            let w = self.dims.split(self.layer_params(&self.params, l));
            let (out, s) = layer::forward(&self.dims, &w, x, batch, &self.rope, true);
            saved.push(s.expect("saved"));
            x = out;
        }
        let d = self.dims.d;
        let (layer_grads, norm_grad) = grads.split_at_mut(grads.len() - d);
        let mut d_x = vec![T::ZERO; x.len()];
        let loss = head::loss(
            &self.head(),
            self.final_norm(),
            &x,
            batch,
            Some((&mut d_x, norm_grad)),
            None,
        );
        drop(x);
        let len = self.dims.layer_len();
        for (i, s) in saved.into_iter().enumerate().rev() {
            let w = self.dims.split(&self.params[i * len..(i + 1) * len]);
            let mut g = self.dims.split_mut(&mut layer_grads[i * len..(i + 1) * len]);
            d_x = layer::backward(&self.dims, &w, s, d_x, batch, &self.rope, &mut g);
        }
        Ok(loss)
    }

    /// Where each trained tensor lies in [`Self::params`] (and in a gradient vector): GGUF
    /// name, shape, range.
    pub fn layout(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let (d, f) = (self.dims.d, self.dims.f);
        let (q, kv) = (self.dims.heads.out_width(), self.dims.heads.kv * self.dims.heads.dim);
        let shapes: [Vec<usize>; 9] = [
            vec![d],
            vec![q, d],
            vec![kv, d],
            vec![kv, d],
            vec![d, q],
            vec![d],
            vec![f, d],
            vec![f, d],
            vec![d, f],
        ];
        let mut out = Vec::new();
        let mut at = 0;
        for l in self.first_trained..self.config.block_count {
            for (name, shape) in layer_tensor_names(l).into_iter().zip(shapes.iter()) {
                let len: usize = shape.iter().product();
                out.push((name, shape.clone(), at..at + len));
                at += len;
            }
        }
        out.push(("output_norm.weight".to_string(), vec![d], at..at + d));
        out
    }

    /// The trained tensors under their GGUF names, as `f32`.
    pub fn trained_tensors(&self) -> Vec<NamedTensor> {
        self.layout()
            .into_iter()
            .map(|(name, shape, range)| {
                let values = self.params[range].iter().map(|v| v.f64() as f32).collect();
                (name, shape, values)
            })
            .collect()
    }
}
