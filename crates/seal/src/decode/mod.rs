//! FM-index-constrained beam search (SEAL.md §2): the language model proposes next tokens,
//! the FM-index says which of them continue an n-gram that really occurs in the corpus.
//!
//! Useful for: turning a prompt into candidate n-grams (body phrases or complete titles), each
//! with its unconstrained log-probability and its corpus count. Not for: weighting or ranking
//! (that is [`crate::score`]), prompts or tokenization (that is [`crate::searcher`]).
//!
//! # How it works
//!
//! A beam carries its forward n-gram, its suffix-array range and its cumulative score. At every
//! step each beam asks the index for the tokens that follow its n-gram in the corpus
//! ([`FmIndex::continuations_into`]); those tokens are scored with the model's *unconstrained*
//! log-softmax (the mask only decides which tokens survive, nothing is renormalised), the best
//! `2 × beam` candidates over all beams are ranked (as SEAL's fairseq search does), and the best
//! `beam` of them continue. Every ranked candidate of every step is kept as a candidate n-gram
//! (all `2 × beam`, not only the surviving beams: their scores are exact and cost nothing more),
//! which is how SEAL scores far more n-grams than its beam size.
//!
//! # Decisions on SEAL's quirks (SEAL.md §6)
//!
//! - Quirk 1 (off-by-one first range): fixed; the index's ranges are exact.
//! - Quirk 3 (forced prefix not applied at step 1): fixed; title decoding starts from the range
//!   of the separator at step 1, so the first title token is always a real title start.
//! - Quirk 6 (last title unreachable): fixed by the index layout (a trailing separator).
//! - Length: body n-grams have at most `max_steps` generated tokens (10 by default; SEAL's
//!   counting gives 9).
//!
//! **Architecture Invariant**: every candidate this module returns has a corpus count > 0 and
//! never contains the document separator, so n-grams never cross documents.

use crate::{Result, TokenId};
use seal_index::{FmIndex, SaRange};

/// Rows of log-probabilities over the vocabulary, one per beam, as a model step returns them.
pub trait LogProbRows {
    /// The log-probabilities of beam `b`.
    fn row(&self, b: usize) -> &[f32];
}

/// Log-probabilities for a batch of beams: `rows × vocab`, row-major.
#[derive(Debug, Clone)]
pub struct LogProbs {
    data: Vec<f32>,
    vocab: usize,
}

impl LogProbs {
    /// Wraps `rows × vocab` log-probabilities laid out row by row.
    ///
    /// # Panics
    /// If `data.len()` is not a multiple of `vocab`.
    pub fn new(data: Vec<f32>, vocab: usize) -> Self {
        assert!(
            vocab > 0 && data.len().is_multiple_of(vocab),
            "log-prob buffer is not rows × vocab"
        );
        LogProbs { data, vocab }
    }

    /// Number of beams.
    pub fn num_rows(&self) -> usize {
        self.data.len() / self.vocab
    }
}

impl LogProbRows for LogProbs {
    fn row(&self, b: usize) -> &[f32] {
        &self.data[b * self.vocab..(b + 1) * self.vocab]
    }
}

/// The distribution(s) the next expansion reads: the prefill's single row, then each step's.
enum Current<'a, R> {
    First(&'a [f32]),
    Step(R),
}

impl<R: LogProbRows> Current<'_, R> {
    fn row(&self, b: usize) -> &[f32] {
        match self {
            Current::First(row) => row,
            Current::Step(rows) => rows.row(b),
        }
    }
}

/// What the decoder needs from a language model: one prefill shared by all beams, then batched
/// steps in which beam `b` continues parent beam `parents[b]` with token `tokens[b]`.
pub trait BeamModel {
    /// The model's per-query state (its KV cache).
    type State;
    /// What a step returns.
    type Rows: LogProbRows;

    /// Runs the prompt once and returns the state and the log-softmax at its last position.
    fn prefill(&self, prompt: &[TokenId]) -> Result<(Self::State, Vec<f32>)>;

    /// One batched step; returns the log-softmax of every beam after its new token.
    fn step(
        &self,
        state: &mut Self::State,
        parents: &[usize],
        tokens: &[TokenId],
    ) -> Result<Self::Rows>;

    /// Teacher-forced log-probabilities of each token of each continuation of `prompt`.
    fn score_continuations(
        &self,
        prompt: &[TokenId],
        continuations: &[Vec<TokenId>],
    ) -> Result<Vec<Vec<f32>>>;
}

/// Which n-grams a search generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any passage n-gram; the first token must pass `first_token_ok` (e.g. start a word).
    Body,
    /// Complete titles: decoding starts at a document boundary (after the separator) and a
    /// hypothesis is complete when it ends with `delimiter` (the tokens of `" @@"`).
    Title {
        /// The tokens that close a title in the document string.
        delimiter: Vec<TokenId>,
        /// The token with which the model ends a title on its own (a newline after the prompt's
        /// `Title …:` cue). When set, the first delimiter token is scored with this token's
        /// log-probability and the rest of the delimiter is free: a decoder-only model was never
        /// taught to write `" @@"` (SEAL's BART was), so its own end-of-title event stands in for
        /// it. When `None`, the delimiter is scored like any other tokens.
        end_token: Option<TokenId>,
    },
}

/// Beam-search settings with SEAL's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamSettings {
    /// Beams kept after every step (SEAL: 15).
    pub beam: usize,
    /// Maximum generated tokens of a body n-gram (SEAL: 10 steps).
    pub max_body_tokens: usize,
    /// Maximum generated tokens of a title, delimiter included (SEAL: 15 steps).
    pub max_title_tokens: usize,
    /// Also yield the title hypotheses still open after `max_title_tokens` as title *prefixes*
    /// (keys `SEP T1 .. Tk` without the delimiter, matching every document whose title starts
    /// so). SEAL yields complete titles only (`false`): its Wikipedia titles are short, but a
    /// scientific title rarely fits in 15 tokens (SciFact's average 12.8 words), and a title
    /// that cannot end within the limit could never be generated. A prefix is stopped at the
    /// limit rather than where it first becomes unique, so that its log-probability measures
    /// the model's belief in the title over as many tokens as a complete title gets.
    pub title_prefixes: bool,
}

impl Default for BeamSettings {
    fn default() -> Self {
        BeamSettings { beam: 15, max_body_tokens: 10, max_title_tokens: 15, title_prefixes: true }
    }
}

/// A generated n-gram.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Forward token ids of the n-gram.
    pub tokens: Vec<TokenId>,
    /// Σ log p(token) under the model given the prompt (unconstrained log-softmax).
    pub logprob: f64,
    /// Occurrences of the n-gram in the corpus (> 0).
    pub count: u64,
}

/// Everything one constrained search produced.
#[derive(Debug, Clone, Default)]
pub struct DecodeOutput {
    /// Candidate n-grams in the order they were generated (step by step, best first).
    pub ngrams: Vec<Generated>,
    /// The model's first-step log-probabilities (the whole vocabulary), for unigram weights.
    pub first_step: Vec<f32>,
    /// Number of batched model steps run.
    pub model_steps: usize,
}

#[derive(Debug, Clone)]
struct Beam {
    tokens: Vec<TokenId>,
    range: SaRange,
    score: f64,
    /// How many tokens of the title delimiter the n-gram ends with (titles only).
    in_delimiter: usize,
}

/// A scored way to extend beam `parent` with `token`.
#[derive(Debug, Clone, Copy)]
struct Expansion {
    parent: usize,
    token: TokenId,
    score: f64,
    range: SaRange,
}

/// Runs FM-index-constrained beam search from `prompt`.
///
/// `first_token_ok` filters the first generated token of a body n-gram (SEAL.md §8: require a
/// word-initial token followed by a letter or digit); it is not applied to titles, whose first
/// token is fixed by the document boundary.
///
/// # Errors
/// Whatever the model returns.
pub fn constrained_beam_search<M: BeamModel>(
    model: &M,
    index: &FmIndex,
    prompt: &[TokenId],
    target: &Target,
    settings: &BeamSettings,
    first_token_ok: &dyn Fn(TokenId) -> bool,
) -> Result<DecodeOutput> {
    let separator = index.separator();
    let (root, max_tokens) = match target {
        Target::Body => (index.full_range(), settings.max_body_tokens),
        Target::Title { .. } => (index.range(&[separator]), settings.max_title_tokens),
    };
    let (mut state, first_step) = model.prefill(prompt)?;
    let mut out = DecodeOutput { first_step, ..Default::default() };
    if root.is_empty() || settings.beam == 0 || max_tokens == 0 {
        return Ok(out);
    }

    let mut beams = vec![Beam { tokens: Vec::new(), range: root, score: 0.0, in_delimiter: 0 }];
    let first_step = std::mem::take(&mut out.first_step);
    let mut logprobs: Current<'_, M::Rows> = Current::First(&first_step);
    let mut allowed: Vec<(TokenId, u64)> = Vec::new();
    let mut expansions: Vec<Expansion> = Vec::new();

    for step in 0..max_tokens {
        expansions.clear();
        for (b, beam) in beams.iter().enumerate() {
            index.continuations_into(beam.range, &mut allowed);
            let row = logprobs.row(b);
            for &(token, _count) in &allowed {
                if token == separator {
                    continue;
                }
                if step == 0 && *target == Target::Body && !first_token_ok(token) {
                    continue;
                }
                // Which token's log-probability scores this expansion (see `Target::Title`).
                let scored_as = match target {
                    Target::Title { delimiter, end_token: Some(end) } => {
                        if beam.in_delimiter > 0 && delimiter.get(beam.in_delimiter) == Some(&token)
                        {
                            None
                        } else if delimiter.first() == Some(&token) && !beam.tokens.is_empty() {
                            Some(*end)
                        } else {
                            Some(token)
                        }
                    }
                    _ => Some(token),
                };
                let lp = match scored_as {
                    None => 0.0,
                    Some(t) => match row.get(t as usize) {
                        Some(&lp) if lp.is_finite() => lp,
                        _ => continue,
                    },
                };
                expansions.push(Expansion {
                    parent: b,
                    token,
                    score: beam.score + f64::from(lp),
                    range: SaRange::default(),
                });
            }
        }
        if expansions.is_empty() {
            break;
        }
        // Best first; ties broken by (parent, token) so the search is deterministic.
        let keep = (2 * settings.beam).min(expansions.len());
        let by_score = |a: &Expansion, b: &Expansion| {
            b.score.total_cmp(&a.score).then(a.parent.cmp(&b.parent)).then(a.token.cmp(&b.token))
        };
        if expansions.len() > keep {
            expansions.select_nth_unstable_by(keep - 1, by_score);
            expansions.truncate(keep);
        }
        expansions.sort_by(by_score);

        let mut next: Vec<Beam> = Vec::with_capacity(settings.beam);
        let mut parents = Vec::with_capacity(settings.beam);
        let mut tokens = Vec::with_capacity(settings.beam);
        for e in expansions.iter_mut() {
            e.range = index.extend(beams[e.parent].range, e.token);
            debug_assert!(!e.range.is_empty(), "an allowed continuation must occur");
            let mut ngram = beams[e.parent].tokens.clone();
            ngram.push(e.token);
            let count = e.range.len() as u64;
            match target {
                Target::Body => {
                    out.ngrams.push(Generated { tokens: ngram.clone(), logprob: e.score, count });
                }
                Target::Title { delimiter, .. } => {
                    if !delimiter.is_empty() && ngram.ends_with(delimiter) {
                        if ngram.len() > delimiter.len() {
                            out.ngrams.push(Generated { tokens: ngram, logprob: e.score, count });
                        }
                        // A complete title is finished: it does not continue.
                        continue;
                    }
                }
            }
            if next.len() < settings.beam {
                parents.push(e.parent);
                tokens.push(e.token);
                let parent = &beams[e.parent];
                let in_delimiter = match target {
                    Target::Title { delimiter, .. } => {
                        if parent.in_delimiter > 0
                            && delimiter.get(parent.in_delimiter) == Some(&e.token)
                        {
                            parent.in_delimiter + 1
                        } else {
                            usize::from(delimiter.first() == Some(&e.token))
                        }
                    }
                    Target::Body => 0,
                };
                next.push(Beam { tokens: ngram, range: e.range, score: e.score, in_delimiter });
            }
        }
        if next.is_empty() {
            break;
        }
        if step + 1 == max_tokens {
            if let (Target::Title { .. }, true) = (target, settings.title_prefixes) {
                // Titles still open at the length limit, as prefix keys (without the part of
                // the delimiter they may have begun).
                for beam in next {
                    let title = &beam.tokens[..beam.tokens.len() - beam.in_delimiter];
                    if !title.is_empty() {
                        // The beam's range is its title's unless it began the delimiter.
                        let range = if beam.in_delimiter == 0 {
                            beam.range
                        } else {
                            index.range(&[&[separator], title].concat())
                        };
                        out.ngrams.push(Generated {
                            tokens: title.to_vec(),
                            logprob: beam.score,
                            count: range.len() as u64,
                        });
                    }
                }
            }
            break;
        }
        logprobs = Current::Step(model.step(&mut state, &parents, &tokens)?);
        out.model_steps += 1;
        beams = next;
    }
    drop(logprobs);
    out.first_step = first_step;
    Ok(out)
}

/// Teacher-forced log-probabilities Σ log p(token) of each of `ngrams` as a continuation of
/// `prompt`, sharing work: the n-grams form a trie, the prompt is run once, first tokens are read
/// off the prefill distribution, and every deeper level is one batched [`BeamModel::step`] over
/// the distinct prefixes that have children. So scoring many short n-grams costs about as many
/// model steps as the longest one has tokens.
///
/// # Errors
/// Whatever the model returns.
pub fn score_ngrams<M: BeamModel>(
    model: &M,
    prompt: &[TokenId],
    ngrams: &[Vec<TokenId>],
) -> Result<Vec<f64>> {
    let mut scores = vec![0.0f64; ngrams.len()];
    let max_len = ngrams.iter().map(Vec::len).max().unwrap_or(0);
    if max_len == 0 {
        return Ok(scores);
    }
    let (mut state, first) = model.prefill(prompt)?;
    let mut logprobs: Current<'_, M::Rows> = Current::First(&first);
    // `node_of[i]` is the row of n-gram i's prefix (of the current depth) in `logprobs`.
    let mut node_of = vec![0usize; ngrams.len()];
    for depth in 0..max_len {
        for (i, g) in ngrams.iter().enumerate() {
            if let Some(&t) = g.get(depth) {
                let lp =
                    logprobs.row(node_of[i]).get(t as usize).copied().unwrap_or(f32::NEG_INFINITY);
                scores[i] += f64::from(lp);
            }
        }
        if depth + 1 == max_len {
            break;
        }
        // Distinct (parent row, token) pairs of n-grams that go deeper become the next rows.
        let mut rows: std::collections::BTreeMap<(usize, TokenId), usize> = Default::default();
        let (mut parents, mut tokens) = (Vec::new(), Vec::new());
        for (i, g) in ngrams.iter().enumerate() {
            if g.len() > depth + 1 {
                let key = (node_of[i], g[depth]);
                let next = rows.len();
                let row = *rows.entry(key).or_insert_with(|| {
                    parents.push(key.0);
                    tokens.push(key.1);
                    next
                });
                node_of[i] = row;
            }
        }
        logprobs = Current::Step(model.step(&mut state, &parents, &tokens)?);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests;
