//! The one decoder every caller drives: [`LanguageModel`] holds whichever family a GGUF file holds
//! ([`load`] reads `general.architecture` and hands the open file to that family's loader) behind
//! the family-independent [`Network`] trait, and offers the decoding API (prefill, continued
//! prefill, batched steps over forked beams, the subset head, teacher-forced scoring), implemented
//! once in [`crate::beams`] for every family. Every family shares the cache type ([`DecodeState`])
//! and the step output ([`StepOutput`]).
//!
//! Not for: anything family-specific (that lives in the family's own file).

use std::path::Path;

use crate::beams::{self, DecodeState, Network, StepOutput};
use crate::gemma::GemmaModel;
use crate::gguf::GgufFile;
use crate::llama::LlamaModel;
use crate::{Error, ErrorKind, Precision, Result};

/// A loaded decoder of one of the supported families.
pub struct LanguageModel {
    network: Box<dyn Network>,
    architecture: String,
}

impl From<LlamaModel> for LanguageModel {
    fn from(model: LlamaModel) -> Self {
        let architecture = model.config().architecture.clone();
        LanguageModel { network: Box::new(model), architecture }
    }
}

impl From<GemmaModel> for LanguageModel {
    fn from(model: GemmaModel) -> Self {
        LanguageModel { network: Box::new(model), architecture: "gemma3".to_string() }
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
    let mut file = GgufFile::open(gguf)?;
    match file.architecture()?.as_str() {
        "llama" | "qwen2" | "mistral" => {
            Ok(LlamaModel::from_gguf(&mut file, precision, Default::default())?.into())
        }
        "gemma3" => Ok(GemmaModel::from_gguf(&mut file, precision)?.into()),
        other => Err(Error::new(
            ErrorKind::Model,
            format!(
                "{}: architecture `{other}` is not supported (supported: llama, qwen2, mistral, gemma3)",
                gguf.display()
            ),
        )),
    }
}

impl LanguageModel {
    /// Size of the vocabulary (rows of the log-softmax).
    pub fn vocab_size(&self) -> usize {
        self.network.vocab_size()
    }

    /// The family's architecture name (`llama`, `qwen2`, `mistral`, `gemma3`).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Runs the prompt once. The returned state holds its cache (shared by all beams) and one
    /// beam, the prompt itself; the vector is the log-softmax over the vocabulary after the last
    /// prompt token.
    ///
    /// # Errors
    /// Empty prompt, a token outside the vocabulary, or a prompt longer than the context.
    pub fn prefill(&self, prompt: &[u32]) -> Result<(DecodeState, Vec<f32>)> {
        beams::prefill(&*self.network, prompt)
    }

    /// Continues a prefilled prompt with more prompt tokens: the returned state is the prompt
    /// `prefix + tokens` (one beam, ready for [`Self::step`]; beams `prefix` may have grown are
    /// ignored) and the vector the log-softmax after its last token. `prefix` is left untouched,
    /// so one prefilled prefix (e.g. the query-independent part of a few-shot prompt) serves many
    /// queries; only `tokens` are computed. The numbers are those of prefilling `prefix + tokens`
    /// at once (every row of a prompt attends to the same entries in the same order; the kernels
    /// are per-row).
    ///
    /// # Errors
    /// `tokens` is empty, `prefix` was made by another model, a token is outside the vocabulary,
    /// or the whole prompt is longer than the context.
    pub fn prefill_continue(
        &self,
        prefix: &DecodeState,
        tokens: &[u32],
    ) -> Result<(DecodeState, Vec<f32>)> {
        beams::prefill_continue(&*self.network, prefix, tokens)
    }

    /// The log-softmax over the vocabulary after every prompt position (row `i` predicts token
    /// `i + 1`), from the same one-batch pass as [`Self::prefill`]. For tests and diagnostics.
    ///
    /// # Errors
    /// As [`Self::prefill`].
    pub fn prompt_log_probs(&self, prompt: &[u32]) -> Result<Vec<Vec<f32>>> {
        beams::prompt_log_probs(&*self.network, prompt)
    }

    /// One batched decoding step: beam `b` continues parent beam `parents[b]` of the previous
    /// step (beam 0 is the prompt right after [`Self::prefill`]) with `tokens[b]`. Any parent may
    /// be used by several beams or by none. Returns the log-softmax of each new beam.
    ///
    /// # Errors
    /// Mismatched lengths, a parent that does not exist, a token outside the vocabulary, a state
    /// from another model, or a sequence longer than the context.
    pub fn step(
        &self,
        state: &mut DecodeState,
        parents: &[usize],
        tokens: &[u32],
    ) -> Result<StepOutput> {
        beams::step(&*self.network, state, parents, tokens)
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
        beams::step_subset(&*self.network, state, parents, tokens, subset)
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
        beams::score_continuations(&*self.network, prompt, continuations)
    }
}
