//! What a search is asked ([`SearchSettings`]) and what it answers ([`SearchResponse`]: hits,
//! their evidence, the generated n-grams, timings), plus the generation a ranking starts from
//! ([`Generated`]).

use crate::decode::BeamSettings;
use crate::prompt::PromptStyle;
use crate::score::{Candidate, ScoringSettings};
use crate::{DocId, Score};
use serde::Serialize;

/// Everything that can be set per query, with SEAL's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSettings {
    /// Passages to return.
    pub k: usize,
    /// Beam size and lengths.
    pub beam: BeamSettings,
    /// The prompt design.
    pub prompt: PromptStyle,
    /// Generate title n-grams too (SEAL: yes).
    pub titles: bool,
    /// Add the query's own 1-3-word spans (SEAL: yes).
    pub query_ngrams: bool,
    /// Weights and ranking.
    pub scoring: ScoringSettings,
    /// Compute evidence spans for the hits (re-tokenizes each returned passage); evaluation
    /// switches it off.
    pub evidence: bool,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            k: 10,
            beam: BeamSettings::default(),
            prompt: PromptStyle::default(),
            titles: true,
            query_ngrams: true,
            scoring: ScoringSettings::default(),
            evidence: true,
        }
    }
}

/// Where a generated n-gram came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NgramSource {
    /// Constrained decoding of the body prompt.
    Body,
    /// A span of the query itself.
    Query,
    /// Constrained decoding of the title prompt (a complete title).
    Title,
    /// One of the best unigrams of the first-step distribution.
    Unigram,
}

/// One weighted n-gram of a query, for display.
#[derive(Debug, Clone, Serialize)]
pub struct NgramReport {
    /// The n-gram's text (titles without the separator).
    pub text: String,
    /// Where it came from.
    pub source: NgramSource,
    /// log P(n | query).
    pub logprob: f64,
    /// Occurrences in the corpus.
    pub count: u64,
    /// Its weight.
    pub weight: f64,
}

/// Which field of a passage a span points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    /// The title.
    Title,
    /// The text.
    Text,
}

/// A matched n-gram occurrence in a passage, in characters (Unicode scalar values) and bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// The field the span is in.
    pub field: Field,
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// First byte (UTF-8).
    pub byte_start: usize,
    /// One past the last byte.
    pub byte_end: usize,
}

/// Why a passage matched: one n-gram, what it added to the score, where it occurs.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// The n-gram's text.
    pub ngram: String,
    /// Where the n-gram came from.
    pub source: NgramSource,
    /// The n-gram's weight.
    pub weight: f64,
    /// What it added to this passage's score (after coverage).
    pub contribution: f64,
    /// Its accepted occurrences.
    pub spans: Vec<Span>,
}

/// One ranked passage.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// 1-based rank.
    pub rank: usize,
    /// The corpus's id of the passage.
    pub id: String,
    /// Internal document number.
    pub doc: DocId,
    /// Title.
    pub title: String,
    /// Text.
    pub text: String,
    /// Score (higher is better).
    pub score: Score,
    /// The matched n-grams, most contributing first.
    pub evidence: Vec<Evidence>,
}

/// Time spent per stage, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Body beam search (prompt + steps).
    pub body_ms: f64,
    /// Query n-gram scoring.
    pub query_ngrams_ms: f64,
    /// Title beam search.
    pub titles_ms: f64,
    /// Weights, ranking and evidence.
    pub scoring_ms: f64,
    /// The whole search.
    pub total_ms: f64,
    /// CPU time of the calling thread over the whole search (Linux; 0 elsewhere). With one
    /// model thread (`RAYON_NUM_THREADS=1`) this is all of the query's compute, without the time
    /// a busy machine kept it waiting.
    pub thread_cpu_ms: f64,
}

/// The answer to one query.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    /// The query as given.
    pub query: String,
    /// Ranked passages.
    pub hits: Vec<Hit>,
    /// Every weighted n-gram, heaviest first.
    pub ngrams: Vec<NgramReport>,
    /// Time per stage.
    pub timings: Timings,
}

/// A query's generated n-grams before ranking ([`Searcher::generate`]).
#[derive(Debug, Clone)]
pub struct Generated {
    /// The query as given.
    pub query: String,
    /// Body, query and title n-grams with log P(n | query), deduplicated, in that order.
    pub candidates: Vec<Candidate>,
    /// Where each candidate came from.
    pub sources: Vec<NgramSource>,
    /// The body prompt's first-step log-softmax (the unigrams' source).
    pub first_step: Vec<f32>,
    /// Time spent generating (`scoring_ms` is 0).
    pub timings: Timings,
}
