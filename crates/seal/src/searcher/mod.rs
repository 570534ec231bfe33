//! The facade: an index directory, a model and a scorer answering queries with ranked passages
//! and their evidence.
//!
//! Useful for: everything that searches (CLI, evaluation, server). Not for: HTTP or terminal
//! concerns (the caller formats), building indexes (that is [`crate::indexer`]).
//!
//! # One query
//!
//! 1. **Body n-grams**: the body prompt ([`crate::prompt`]) is run once, then FM-index-constrained
//!    beam search ([`crate::decode`]) generates passage n-grams. The first token must be a
//!    word-initial token whose text continues with a letter or digit (SEAL.md §8), because the
//!    corpus was tokenized with a leading space: this is what makes the prompt's continuation and
//!    the index agree on token boundaries.
//! 2. **Query n-grams**: every 1-3-word span of the query, each word as written or capitalized,
//!    that occurs in the corpus, scored teacher-forced with the same body prompt (SEAL.md §6
//!    quirk 4 is fixed: the reference rescored with the bare query, without its markers).
//! 3. **Title n-grams**: the title prompt, decoding from the document boundary to the title
//!    delimiter; complete titles become `SEP T1 .. Tm @@` keys, and titles still open at the length
//!    limit become prefix keys `SEP T1 .. Tk` (`title_prefixes`, on by default; not in SEAL).
//! 4. **Unigrams**: the body prompt's first-step distribution (its best `max_unigrams` tokens).
//! 5. **Scoring** ([`crate::score`]): weights, two-stage intersective (or LM+FM) ranking. Before
//!    it, body n-grams that end inside a word in most of their occurrences (`" autoph"`) are
//!    dropped (`whole_words`, on by default; not in SEAL).
//! 6. **Evidence**: for each returned passage, the token spans of its matches become character
//!    spans of its title and text (the passage string is re-tokenized with offsets).
//!
//! Candidates are deduplicated in the order body → query → title (the first wins), as SEAL does.
//!
//! **Architecture Invariant**: search is deterministic for (index, model, query, settings): no
//! randomness, no thread-count-dependent order.
//!
//! # Files
//!
//! - this file: [`Searcher`] (generating, ranking);
//! - `open`: opening an index with its model (and adapter), checked against each other;
//! - `builder`: [`SearcherBuilder`], from "an index or the sample, a model name or path, an
//!   adapter" to an open searcher and the prompt style a trained model needs;
//! - `response`: the settings and everything a search returns;
//! - `limits`: the accepted range of each setting, shared by the library, the CLI and the API;
//! - `candidates`: the query's own spans and the first-step unigrams;
//! - `model_view`: the FM-index as the scorer's corpus, the model as the decoder's;
//! - `evidence`: token spans of a hit back to character spans of its title and text.

use crate::decode::{constrained_beam_search, score_ngrams, Target};
use crate::docstore::DocStore;
use crate::indexer::Manifest;
use crate::model::tokenizer::Tokenizer;
use crate::model::DecodeState;
use crate::model::LanguageModel;
use crate::prompt::{prompt, prompt_prefix, PromptKind, PromptStyle};
use crate::score::{Candidate, KeyOrigin, KeySet, ScoredDoc, Scorer, ScoringSettings};
use crate::{Error, ErrorKind, Result, TokenId};
use seal_index::FmIndex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Longest query accepted, in bytes; longer ones are an error rather than a slow search.
pub const MAX_QUERY_BYTES: usize = 2048;

mod builder;
mod candidates;
mod evidence;
mod limits;
mod model_view;
mod open;
mod response;

pub use builder::{OpenProgress, SearcherBuilder, SAMPLE_CORPUS};
use candidates::best_unigrams;
pub use candidates::query_spans;
use evidence::SpanLocator;
pub use limits::{InvalidSetting, MAX_BEAM, MAX_NGRAM_TOKENS};
pub use model_view::FmCorpus;
use model_view::ModelAdapter;
pub use response::*;

/// An opened index with its model: answers many queries, from many threads.
pub struct Searcher {
    dir: PathBuf,
    manifest: Manifest,
    index: FmIndex,
    docs: DocStore,
    tokenizer: Tokenizer,
    model: LanguageModel,
    /// `first_token_ok[id]`: may a body n-gram start with this token?
    first_token_ok: Vec<bool>,
    /// `continues_word[id]`: does this token continue the word before it (no leading space,
    /// starts with a letter or digit)?
    continues_word: Vec<bool>,
    /// The token a title answer ends with (`"\n"`), scored in place of the title delimiter.
    title_end_token: Option<TokenId>,
    /// The query-independent start of each prompt (style × kind), prefilled once on first use
    /// and shared by every query and thread; `None` when that prompt has no usable prefix.
    prefixes: [std::sync::OnceLock<Option<PromptPrefix>>; 4],
}

/// A prefilled prompt prefix: its token ids and the model's state after them.
struct PromptPrefix {
    tokens: Vec<TokenId>,
    state: DecodeState,
}

impl Searcher {
    /// The prefilled query-independent prefix of a prompt, computed on first use. Its tokens
    /// are those that every full prompt of this style and kind starts with: the tokens of
    /// [`prompt_prefix`] up to where they agree with a whole prompt's tokens (a boundary token
    /// could merge with the query's text); [`ModelAdapter::prefill`] checks the match anyway.
    fn prompt_prefix(&self, style: PromptStyle, kind: PromptKind) -> Option<&PromptPrefix> {
        let slot = match (style, kind) {
            (PromptStyle::FewShot, PromptKind::Body) => 0,
            (PromptStyle::FewShot, PromptKind::Title) => 1,
            (PromptStyle::Plain, PromptKind::Body) => 2,
            (PromptStyle::Plain, PromptKind::Title) => 3,
        };
        self.prefixes[slot]
            .get_or_init(|| {
                let mut tokens = self.bos_ids();
                tokens.extend(self.tokenizer.encode(&prompt_prefix(style, kind)).ok()?);
                let whole = self.prompt_ids(style, kind, "x").ok()?;
                let common = tokens.iter().zip(&whole).take_while(|(a, b)| a == b).count();
                // Leave at least one token to continue with (its log-softmax is the answer).
                tokens.truncate(common.min(whole.len().saturating_sub(1)));
                if tokens.is_empty() {
                    return None;
                }
                let (state, _) = self.model.prefill(&tokens).ok()?;
                Some(PromptPrefix { tokens, state })
            })
            .as_ref()
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The FM-index.
    pub fn index(&self) -> &FmIndex {
        &self.index
    }

    /// The passages.
    pub fn docs(&self) -> &DocStore {
        &self.docs
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Answers `query`: [`Self::generate`] then [`Self::rank`].
    ///
    /// # Errors
    /// An empty or over-long query, invalid settings, or a model failure.
    pub fn search(&self, query: &str, settings: &SearchSettings) -> Result<SearchResponse> {
        let started_cpu = thread_cpu_ms();
        let generated = self.generate(query, settings)?;
        let mut response = self.rank(&generated, settings)?;
        response.timings.thread_cpu_ms = thread_cpu_ms() - started_cpu;
        Ok(response)
    }

    /// The model's part of a query (steps 1-4): every weighted-to-be n-gram with its
    /// log-probability and the first-step distribution, before any ranking. One generation can
    /// be ranked several ways ([`Self::rank`] with different [`ScoringSettings`]) at the cost of
    /// one decode.
    ///
    /// # Errors
    /// An empty or over-long query, a setting out of its range ([`SearchSettings::validate`]),
    /// or a model failure.
    pub fn generate(&self, query: &str, settings: &SearchSettings) -> Result<Generated> {
        settings.validate()?;
        let started = Instant::now();
        let query_text = query.split_whitespace().collect::<Vec<_>>().join(" ");
        if query_text.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, "the query is empty; type some words"));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("the query is {} bytes long; the limit is {MAX_QUERY_BYTES}", query.len()),
            ));
        }
        let mut timings = Timings::default();

        // 1. Body n-grams.
        let t = Instant::now();
        let body_prompt = self.prompt_ids(settings.prompt, PromptKind::Body, &query_text)?;
        let mut prefixes = vec![self.prompt_prefix(settings.prompt, PromptKind::Body)];
        if settings.titles {
            prefixes.push(self.prompt_prefix(settings.prompt, PromptKind::Title));
        }
        let model = ModelAdapter {
            model: &self.model,
            prefixes: prefixes.into_iter().flatten().collect(),
            last_prefill: Default::default(),
        };
        let first_ok = |id: TokenId| self.first_token_ok.get(id as usize).copied().unwrap_or(false);
        let body = constrained_beam_search(
            &model,
            &self.index,
            &body_prompt,
            &Target::Body,
            &settings.beam,
            &first_ok,
        )?;
        timings.body_ms = ms(t);
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut sources: Vec<NgramSource> = Vec::new();
        for g in &body.ngrams {
            candidates.push(Candidate { tokens: g.tokens.clone(), logprob: g.logprob });
            sources.push(NgramSource::Body);
        }

        // 2. Query n-grams.
        let t = Instant::now();
        if settings.query_ngrams {
            let seen: HashSet<&[TokenId]> =
                candidates.iter().map(|c| c.tokens.as_slice()).collect();
            let mut spans: Vec<Vec<TokenId>> = Vec::new();
            let mut span_set: HashSet<Vec<TokenId>> = HashSet::new();
            for span in query_spans(&query_text) {
                let tokens = self.tokenizer.encode(&format!(" {span}"))?;
                if tokens.is_empty() || seen.contains(tokens.as_slice()) {
                    continue;
                }
                if self.index.count(&tokens) > 0 && span_set.insert(tokens.clone()) {
                    spans.push(tokens);
                }
            }
            let scores = score_ngrams(&model, &body_prompt, &spans)?;
            for (tokens, logprob) in spans.into_iter().zip(scores) {
                candidates.push(Candidate { tokens, logprob });
                sources.push(NgramSource::Query);
            }
        }
        timings.query_ngrams_ms = ms(t);

        // 3. Title n-grams, as `SEP T1 .. Tm @@` keys.
        let t = Instant::now();
        if settings.titles && !self.manifest.tokenizer.title_delimiter.is_empty() {
            let title_prompt = self.prompt_ids(settings.prompt, PromptKind::Title, &query_text)?;
            let target = Target::Title {
                delimiter: self.manifest.tokenizer.title_delimiter.clone(),
                end_token: self.title_end_token,
            };
            let titles = constrained_beam_search(
                &model,
                &self.index,
                &title_prompt,
                &target,
                &settings.beam,
                &first_ok,
            )?;
            let sep = self.index.separator();
            for g in titles.ngrams {
                let mut tokens = Vec::with_capacity(g.tokens.len() + 1);
                tokens.push(sep);
                tokens.extend_from_slice(&g.tokens);
                candidates.push(Candidate { tokens, logprob: g.logprob });
                sources.push(NgramSource::Title);
            }
        }
        timings.titles_ms = ms(t);
        timings.total_ms = ms(started);
        Ok(Generated {
            query: query.to_owned(),
            candidates,
            sources,
            first_step: body.first_step,
            timings,
        })
    }

    /// Ranks a generation (steps 4-6): unigrams, weights, ranking with `settings.scoring`, and
    /// the best `settings.k` hits with their evidence. The response's timings are the
    /// generation's plus this ranking's (`scoring_ms`); `thread_cpu_ms` is left to the caller.
    ///
    /// # Errors
    /// Invalid scoring settings or `k` = 0.
    pub fn rank(&self, generated: &Generated, settings: &SearchSettings) -> Result<SearchResponse> {
        if settings.k == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "k must be at least 1"));
        }
        let scorer = Scorer::new(ScoringSettings {
            num_candidates: settings.scoring.num_candidates.max(settings.k),
            ..settings.scoring.clone()
        })?;
        let mut timings = generated.timings.clone();
        let t = Instant::now();
        let (candidates, sources): (Vec<Candidate>, Vec<NgramSource>) = generated
            .candidates
            .iter()
            .zip(&generated.sources)
            .filter(|(c, &source)| {
                !(settings.scoring.whole_words
                    && source == NgramSource::Body
                    && self.ends_inside_words(&c.tokens))
            })
            .map(|(c, &source)| (c.clone(), source))
            .unzip();
        let first_step = &generated.first_step;

        // 4-5. Unigrams, weights, ranking.
        let unigrams = best_unigrams(first_step, scorer.settings().max_unigrams);
        let view = FmCorpus(&self.index);
        let keys = scorer.keys(&view, &candidates, &unigrams);
        let ranked = scorer.rank(&view, &keys);

        // Reports of every key, heaviest first.
        let key_source = |i: usize| -> NgramSource {
            let key = &keys.keys()[i];
            match key.origin {
                KeyOrigin::Unigram => NgramSource::Unigram,
                KeyOrigin::Candidate => candidates
                    .iter()
                    .position(|c| c.tokens == key.tokens)
                    .map_or(NgramSource::Body, |j| sources[j]),
            }
        };
        let sep = self.index.separator();
        let key_text = |i: usize| -> String {
            let tokens: Vec<TokenId> =
                keys.keys()[i].tokens.iter().copied().filter(|&t| t != sep).collect();
            self.tokenizer.decode(&tokens).unwrap_or_default().trim().to_owned()
        };
        let mut order: Vec<usize> = (0..keys.keys().len()).collect();
        order.sort_by(|&a, &b| keys.keys()[b].weight.total_cmp(&keys.keys()[a].weight));
        let ngrams = order
            .iter()
            .map(|&i| {
                let key = &keys.keys()[i];
                NgramReport {
                    text: key_text(i),
                    source: key_source(i),
                    logprob: key.logprob,
                    count: key.count,
                    weight: key.weight,
                }
            })
            .collect();

        // 6. Hits with evidence.
        let mut hits = Vec::with_capacity(settings.k);
        for (rank, scored) in ranked.iter().take(settings.k).enumerate() {
            let Some(doc) = self.docs.get(scored.doc) else { continue };
            let evidence = if settings.evidence {
                self.evidence(doc.title, doc.text, scored, &keys, &key_text, &key_source)
            } else {
                Vec::new()
            };
            hits.push(Hit {
                rank: rank + 1,
                id: doc.id.to_owned(),
                doc: scored.doc,
                title: doc.title.to_owned(),
                text: doc.text.to_owned(),
                score: scored.score,
                evidence,
            });
        }
        timings.scoring_ms = ms(t);
        timings.total_ms += timings.scoring_ms;
        Ok(SearchResponse { query: generated.query.clone(), hits, ngrams, timings })
    }

    /// Whether `ngram` ends inside a word in more than half of its corpus occurrences (the
    /// token after it continues the word), as a cut-off fragment like `" autoph"` does.
    fn ends_inside_words(&self, ngram: &[TokenId]) -> bool {
        let range = self.index.range(ngram);
        let inside: u64 = self
            .index
            .continuations(range)
            .iter()
            .filter(|(t, _)| self.continues_word.get(*t as usize).copied().unwrap_or(false))
            .map(|(_, n)| n)
            .sum();
        inside * 2 > range.len() as u64
    }

    /// The evidence of one scored passage: its matched keys (one entry per key, all its spans)
    /// and its uncovered unigrams, most contributing first.
    fn evidence(
        &self,
        title: &str,
        text: &str,
        scored: &ScoredDoc,
        keys: &KeySet,
        key_text: &dyn Fn(usize) -> String,
        key_source: &dyn Fn(usize) -> NgramSource,
    ) -> Vec<Evidence> {
        let locator = SpanLocator::new(&self.tokenizer, title, text);
        let mut by_key: Vec<(usize, Evidence)> = Vec::new();
        for m in &scored.matches {
            let spans = locator.span(m.start, m.len).into_iter();
            if let Some((_, e)) = by_key.iter_mut().find(|(k, _)| *k == m.key) {
                e.contribution += m.contribution;
                e.spans.extend(spans);
            } else {
                by_key.push((
                    m.key,
                    Evidence {
                        ngram: key_text(m.key),
                        source: key_source(m.key),
                        weight: keys.keys()[m.key].weight,
                        contribution: m.contribution,
                        spans: spans.collect(),
                    },
                ));
            }
        }
        let mut evidence: Vec<Evidence> = by_key.into_iter().map(|(_, e)| e).collect();
        for u in &scored.unigrams {
            evidence.push(Evidence {
                ngram: self.tokenizer.decode(&[u.token]).unwrap_or_default().trim().to_owned(),
                source: NgramSource::Unigram,
                weight: keys.unigram_weight(u.token),
                contribution: u.contribution,
                spans: u.starts.iter().filter_map(|&s| locator.span(s, 1)).collect(),
            });
        }
        evidence.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        evidence
    }

    /// The token ids of a prompt, with the model's BOS when its tokenizer asks for one.
    fn prompt_ids(
        &self,
        style: PromptStyle,
        kind: PromptKind,
        query: &str,
    ) -> Result<Vec<TokenId>> {
        let mut ids = self.bos_ids();
        ids.extend(self.tokenizer.encode(&prompt(style, kind, query))?);
        Ok(ids)
    }

    /// The BOS token when the tokenizer asks for one, else nothing.
    fn bos_ids(&self) -> Vec<TokenId> {
        self.tokenizer.bos_id().filter(|_| self.tokenizer.add_bos()).into_iter().collect()
    }
}

/// CPU time of the calling thread in ms (`/proc/thread-self/schedstat`), 0 where unavailable.
pub(crate) fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e6)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
