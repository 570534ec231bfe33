//! The two adapters between the searcher's parts: the FM-index as the scorer's [`CorpusView`],
//! and the language model, with its prefilled prompt prefixes, as the decoder's [`BeamModel`].

use super::PromptPrefix;
use crate::decode::{BeamModel, LogProbRows};
use crate::model::{DecodeState, LanguageModel, StepOutput};
use crate::score::CorpusView;
use crate::{DocId, Result, TokenId};
use seal_index::FmIndex;

/// The FM-index as the scorer's [`CorpusView`].
pub struct FmCorpus<'a>(pub &'a FmIndex);

impl CorpusView for FmCorpus<'_> {
    fn num_tokens(&self) -> u64 {
        self.0.num_tokens() as u64
    }
    fn count(&self, ngram: &[TokenId]) -> u64 {
        self.0.count(ngram)
    }
    fn occurrences(&self, ngram: &[TokenId], limit: usize) -> Vec<(DocId, usize)> {
        let range = self.0.range(ngram);
        self.0.occurrences(range, ngram.len()).take(limit).collect()
    }
    fn doc_tokens(&self, doc: DocId) -> Vec<TokenId> {
        self.0.doc_tokens(doc)
    }
    fn num_docs(&self) -> usize {
        self.0.num_docs()
    }
    fn mean_doc_len(&self) -> f64 {
        // The indexed text is every document and its separator, then a trailing separator.
        let docs = self.0.num_docs().max(1);
        let tokens = self.0.num_tokens().saturating_sub(self.0.num_docs() + 1);
        (tokens as f64 / docs as f64).max(1.0)
    }
    fn separator(&self) -> Option<TokenId> {
        Some(self.0.separator())
    }
}

/// The llama model as the decoder's [`BeamModel`], for one query: a prompt that starts with one
/// of the prefilled `prefixes` is continued from it, and the last prefill is remembered (the body
/// prompt is decoded from and then scores the query n-grams), so neither the few-shot examples
/// nor a query's prompt run twice. Same numbers as prefilling each prompt from scratch.
pub(super) struct ModelAdapter<'a> {
    pub(super) model: &'a LanguageModel,
    pub(super) prefixes: Vec<&'a PromptPrefix>,
    pub(super) last_prefill: std::cell::RefCell<Option<Prefilled>>,
}

/// A prompt, the state after it and its last log-softmax.
type Prefilled = (Vec<TokenId>, DecodeState, Vec<f32>);

impl LogProbRows for StepOutput {
    fn row(&self, b: usize) -> &[f32] {
        StepOutput::row(self, b)
    }
}

impl BeamModel for ModelAdapter<'_> {
    type State = DecodeState;
    type Rows = StepOutput;

    fn prefill(&self, prompt: &[TokenId]) -> Result<(DecodeState, Vec<f32>)> {
        if let Some((tokens, state, first)) = self.last_prefill.borrow().as_ref() {
            if tokens == prompt {
                return Ok((state.clone(), first.clone()));
            }
        }
        let prefix = self
            .prefixes
            .iter()
            .find(|p| prompt.len() > p.tokens.len() && prompt.starts_with(&p.tokens));
        let (state, first) = match prefix {
            Some(p) => self.model.prefill_continue(&p.state, &prompt[p.tokens.len()..])?,
            None => self.model.prefill(prompt)?,
        };
        *self.last_prefill.borrow_mut() = Some((prompt.to_vec(), state.clone(), first.clone()));
        Ok((state, first))
    }

    fn step(
        &self,
        state: &mut DecodeState,
        parents: &[usize],
        tokens: &[TokenId],
    ) -> Result<StepOutput> {
        Ok(self.model.step(state, parents, tokens)?)
    }

    fn score_continuations(
        &self,
        prompt: &[TokenId],
        continuations: &[Vec<TokenId>],
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self.model.score_continuations(prompt, continuations)?)
    }
}
