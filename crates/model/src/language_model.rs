//! One type for every supported model family, so that the searcher, the indexer and the
//! evaluation work with any of them: [`load`] reads `general.architecture` from the GGUF file and
//! picks the family's network. Every family shares the cache type ([`DecodeState`]) and the step
//! output ([`StepOutput`]).
//!
//! Not for: anything family-specific (that lives in the family's own file).

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::gemma::GemmaModel;
use super::llama::{DecodeState, LlamaModel, Precision, StepOutput};
use crate::{Error, ErrorKind, Result};

/// A loaded decoder of one of the supported families.
pub enum LanguageModel {
    /// `llama`, `qwen2`, `mistral` (SmolLM2 is `llama`).
    Llama(LlamaModel),
    /// `gemma3` (Gemma-3-270M).
    Gemma(GemmaModel),
}

impl From<LlamaModel> for LanguageModel {
    fn from(model: LlamaModel) -> Self {
        LanguageModel::Llama(model)
    }
}

/// Reads the GGUF file's `general.architecture` and loads it with its family's code, on the CPU
/// with exact arithmetic.
///
/// # Errors
/// The file cannot be read or is not GGUF, the architecture is not supported, or the family's
/// loader fails.
pub fn load(gguf: &Path) -> Result<LanguageModel> {
    load_with_precision(gguf, Precision::default())
}

/// [`load`] with a choice of arithmetic.
///
/// # Errors
/// As [`load`].
pub fn load_with_precision(gguf: &Path, precision: Precision) -> Result<LanguageModel> {
    let arch = architecture(gguf)?;
    match arch.as_str() {
        "llama" | "qwen2" | "mistral" => Ok(LanguageModel::Llama(
            LlamaModel::load_with_precision(gguf, &Device::Cpu, precision)?,
        )),
        "gemma3" => Ok(LanguageModel::Gemma(GemmaModel::load_with_precision(
            gguf,
            &Device::Cpu,
            precision,
        )?)),
        other => Err(Error::new(
            ErrorKind::Model,
            format!(
                "{}: architecture `{other}` is not supported (supported: llama, qwen2, mistral, gemma3)",
                gguf.display()
            ),
        )),
    }
}

/// The `general.architecture` of a GGUF file (reads the header only).
///
/// # Errors
/// The file cannot be read, is not GGUF, or has no architecture.
pub fn architecture(gguf: &Path) -> Result<String> {
    let file = std::fs::File::open(gguf).map_err(|e| {
        Error::new(ErrorKind::Model, format!("cannot open model file {}", gguf.display()))
            .with_source(e)
    })?;
    let content = gguf_file::Content::read(&mut std::io::BufReader::new(file)).map_err(|e| {
        Error::new(ErrorKind::Model, format!("{} is not a readable GGUF file", gguf.display()))
            .with_source(e)
    })?;
    content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Model,
                format!("{}: GGUF metadata lacks `general.architecture`", gguf.display()),
            )
        })
}

macro_rules! each {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            LanguageModel::Llama($m) => $e,
            LanguageModel::Gemma($m) => $e,
        }
    };
}

impl LanguageModel {
    /// Size of the vocabulary (rows of the log-softmax).
    pub fn vocab_size(&self) -> usize {
        each!(self, m => m.vocab_size())
    }

    /// The family's architecture name (`llama`, `qwen2`, `mistral`, `gemma3`).
    pub fn architecture(&self) -> &str {
        match self {
            LanguageModel::Llama(m) => &m.config().architecture,
            LanguageModel::Gemma(_) => "gemma3",
        }
    }

    /// See [`LlamaModel::prefill`].
    ///
    /// # Errors
    /// As the family's `prefill`.
    pub fn prefill(&self, prompt: &[u32]) -> Result<(DecodeState, Vec<f32>)> {
        each!(self, m => m.prefill(prompt))
    }

    /// See [`LlamaModel::prefill_continue`].
    ///
    /// # Errors
    /// As the family's `prefill_continue`.
    pub fn prefill_continue(
        &self,
        prefix: &DecodeState,
        tokens: &[u32],
    ) -> Result<(DecodeState, Vec<f32>)> {
        each!(self, m => m.prefill_continue(prefix, tokens))
    }

    /// See [`LlamaModel::prompt_log_probs`].
    ///
    /// # Errors
    /// As the family's `prompt_log_probs`.
    pub fn prompt_log_probs(&self, prompt: &[u32]) -> Result<Vec<Vec<f32>>> {
        each!(self, m => m.prompt_log_probs(prompt))
    }

    /// See [`LlamaModel::step`].
    ///
    /// # Errors
    /// As the family's `step`.
    pub fn step(
        &self,
        state: &mut DecodeState,
        parents: &[usize],
        tokens: &[u32],
    ) -> Result<StepOutput> {
        each!(self, m => m.step(state, parents, tokens))
    }

    /// See [`LlamaModel::step_subset`].
    ///
    /// # Errors
    /// As the family's `step_subset`.
    pub fn step_subset(
        &self,
        state: &mut DecodeState,
        parents: &[usize],
        tokens: &[u32],
        subset: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>> {
        each!(self, m => m.step_subset(state, parents, tokens, subset))
    }

    /// See [`LlamaModel::score_continuations`].
    ///
    /// # Errors
    /// As the family's `score_continuations`.
    pub fn score_continuations(
        &self,
        prompt: &[u32],
        continuations: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        each!(self, m => m.score_continuations(prompt, continuations))
    }
}
