//! n-gram weights and passage ranking: SEAL's "LM+FM" and "intersective" rankings (SEAL.md §3,
//! paper §3.2-3.3, Eqs. 1-4).
//!
//! Not for: generating n-grams (that is [`crate::decode`]) or turning token offsets into
//! characters (the searcher does that with the tokenizer's offsets).
//!
//! # How a query is scored
//!
//! 1. **Keys** ([`Scorer::keys`]): the decoder's candidate n-grams with their log-probabilities
//!    given the query become [`Key`]s, deduplicated by tokens (the first candidate wins), each with
//!    its corpus count `F` and its weight `w = max(0, log-odds)^α` ([`ngram_weight`], Eqs. 1-2).
//!    The model's first-step distribution gives *unigram weights* (the same log-odds, see quirk 5
//!    below), and the `len(keys)` best unigrams that are not already keys join the keys.
//! 2. **First stage** ([`Scorer::rank`]): keys that occur at most
//!    [`rare_threshold`](ScoringSettings::rare_threshold) times are *rare*. In weight order, up to
//!    [`max_occurrences`](ScoringSettings::max_occurrences) occurrences of each rare key are
//!    located; every document hit becomes a candidate with a first-stage score (the coverage-
//!    weighted sum of its distinct rare keys whose occurrence did not overlap an earlier one; for
//!    LM+FM the best such key).
//! 3. **Full scoring**: the best [`num_candidates`](ScoringSettings::num_candidates) candidates
//!    are scored against *all* keys (rare and frequent) by the greedy matcher:
//!    - *intersective* (Eqs. 3-4): occurrences in order of weight (then key, then position); an
//!      occurrence is accepted if none of its tokens is covered yet; the first accepted occurrence
//!      of a key adds `w · cover(n, C)` with `cover(n, C) = 1 − β + β·|types(n) \ C| / |types(n)|`
//!      ([`coverage_factor`]), `C` being the token types of the keys accepted before it; later
//!      occurrences of the same key only cover their tokens (each distinct n-gram counts once).
//!      Then every token type left uncovered adds its unigram weight once, times its coverage
//!      factor against the final `C`.
//!    - *LM+FM*: the weight of the best key that occurs in the document.
//! 4. Documents are sorted by score, ties by [`DocId`] ascending. Each result carries its
//!    evidence ([`Match`], [`UnigramMatch`]) in token offsets of the forward document.
//!
//! Search is deterministic: no result depends on hash-map iteration order; ties are broken by key
//! order (weight, then position in the key list), position and document id.
//!
//! # Decisions on the reference code's quirks (SEAL.md §6) and other choices
//!
//! - **Quirk 2 (first-stage overlap intervals shifted by −len in reversed coordinates, i.e. by
//!   +len in forward ones): fixed.** The first stage tests overlap on
//!   the exact token interval `[start, start + len)` of each occurrence, per document, so keys of
//!   different lengths are treated like keys of equal length. (The reference's shifted intervals
//!   were also global text positions and could reach into the neighbouring document.)
//! - **Quirk 5 (unigram weights not raised to α): faithful by default.** Unigram weights are the
//!   plain positive log-odds, both as uncovered-token weights and as the weights of the unigrams
//!   added as keys; [`UnigramExponent::Alpha`] raises them to α like every other key.
//! - **`logprob = 0`**: capped at [`MAX_LOGPROB`] (`P(n|q) ≤ 1 − 1e-10`), which equals the
//!   reference's `score − 1e-10` at 0; no weight is ever infinite or `NaN`.
//! - **Queries whose keys are all frequent**: the reference returns no document (no rare key, no
//!   candidate). With [`frequent_fallback`](ScoringSettings::frequent_fallback) (default) the
//!   first stage then uses every key, each limited to `max_occurrences` located occurrences, so a
//!   query still gets an answer; switch it off for the reference behaviour.
//! - **Keys that cannot help** (weight 0, or more than [`max_key_count`](ScoringSettings::max_key_count)
//!   occurrences, the reference's 10,000,000) are kept in the [`KeySet`] for display but never
//!   matched. Unigrams that are already keys, and the separator, get no unigram weight.
//! - **Title keys** (`SEP T1 .. Tm @@`): every document is matched as `[SEP] + tokens`, like the
//!   reference's `[2] + doc[:-1]`; the separator slot can be covered by a key but is never an
//!   uncovered token, and evidence spans leave it out (a title key's [`Match`] starts at 0 and is
//!   one token shorter than the key).
//! - **Evidence**: a key's contribution is reported on its first accepted occurrence; its further
//!   accepted occurrences are reported with contribution 0 (they are highlighted, not counted), so
//!   the contributions of a result always sum to its score.
//! - **Duplicated candidates**: the first one wins (the decoder orders body → query → title, as
//!   the reference's deduplication does).
//! - **"The top `len(keys)` unigrams"**: `len(keys)` is the number of distinct candidates,
//!   weight 0 included, as in the reference; only unigrams with a positive weight are added.
//! - **Frequent fallback, which occurrences**: when the fallback runs (or a rare key has more
//!   occurrences than `max_occurrences`), which occurrences are located is the index's choice (its
//!   suffix-array order), deterministic but not "the best" ones.
//! - **β = 1**: a key whose types are all covered would add 0; as in the reference it then does
//!   not cover its tokens either (they stay free for later keys and unigram weights).
//! - The other quirks of SEAL.md §6 are outside this module: 1 (off-by-one unigram range) only
//!   reaches the scorer through [`CorpusView::count`] (`seal-index` counts exactly, tested against
//!   a naive scan); 3, 4, 6 and 7 belong to the decoder, the index layout and the output.
//!
//! # Cost
//!
//! Keys: one [`CorpusView::count`] per candidate and per listed unigram (up to
//! [`max_unigrams`](ScoringSettings::max_unigrams)). First stage: one located occurrence per hit
//! of a rare key (at most `max_occurrences` each). Full scoring: one
//! [`CorpusView::doc_tokens`] per candidate, then a pass over the document that looks up, per
//! token, only the keys starting with that token. BENCHMARKS.md ("Scoring layer") has measured figures.

mod corpus;
mod evidence;
mod keys;
mod matcher;
mod rank;
mod weight;

pub use corpus::{CorpusView, NaiveCorpus};
pub use evidence::{Match, ScoredDoc, UnigramMatch};
pub use keys::{Candidate, Key, KeyOrigin, KeySet};
pub use weight::{coverage_factor, log_odds, ngram_weight, MAX_LOGPROB};

use crate::{DocId, Error, ErrorKind, Result, TokenId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How documents are ranked from their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ranking {
    /// The paper's headline method (Eqs. 3-4): the coverage-weighted sum of non-overlapping keys,
    /// plus the unigram weights of uncovered tokens.
    #[default]
    Intersective,
    /// "LM+FM": the weight of the single best key the document contains.
    #[serde(rename = "lm+fm")]
    LmFm,
}

impl fmt::Display for Ranking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ranking::Intersective => "intersective",
            Ranking::LmFm => "lm+fm",
        })
    }
}

impl FromStr for Ranking {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "intersective" => Ok(Ranking::Intersective),
            "lm+fm" | "lmfm" | "lm-fm" => Ok(Ranking::LmFm),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("unknown ranking {s:?}: use \"intersective\" or \"lm+fm\""),
            )),
        }
    }
}

/// Whether unigram weights are raised to α (SEAL.md §6 quirk 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnigramExponent {
    /// The reference code: unigram weights are the plain log-odds, `max(0, log-odds)`.
    #[default]
    One,
    /// Like every other key: `max(0, log-odds)^α`.
    Alpha,
}

/// Every knob of SEAL's scoring, with the reference code's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoringSettings {
    /// α, the exponent of Eq. 2, `w(n) = max(0, log-odds)^α`. SEAL: 2.
    pub alpha: f64,
    /// The additive smoothing of the corpus prior `P(n) = (F(n) + s) / (N + s)` (Eq. 1). SEAL: 5.
    pub smoothing: f64,
    /// β of the coverage factor `cover(n, C) = 1 − β + β·|types(n) \ C| / |types(n)|` (Eq. 4),
    /// in `[0, 1]`: 0 ignores repetition, 1 gives a fully repeated key nothing. SEAL: 0.8.
    pub beta: f64,
    /// A key is *rare* if it occurs at most this many times; only rare keys find candidates in the
    /// first stage. SEAL: 1,500 (the reference's `max_hits`).
    pub rare_threshold: u64,
    /// At most this many occurrences of each key are located in the first stage. SEAL: 1,500.
    pub max_occurrences: usize,
    /// How many first-stage candidates are fully scored (and so at most how many documents are
    /// returned). SEAL: 1,500 (`fully_score`).
    pub num_candidates: usize,
    /// Keys occurring more often than this are ignored entirely. SEAL: 10,000,000
    /// (`skip_frequent_keys`).
    pub max_key_count: u64,
    /// The ranking. SEAL's default and headline: intersective.
    pub ranking: Ranking,
    /// Uncovered tokens add their unigram weights (intersective only). SEAL: yes.
    pub unigram_scores: bool,
    /// The `len(keys)` best unigrams that are not already keys are added as keys. SEAL: yes
    /// (`add_best_unigrams_to_ngrams`).
    pub unigram_keys: bool,
    /// Only the best this-many unigrams of the model's first-step distribution get a weight.
    /// SEAL: 5,000 (`use_top_k_ngrams`).
    pub max_unigrams: usize,
    /// Whether unigram weights are raised to α (quirk 5). SEAL: no.
    pub unigram_exponent: UnigramExponent,
    /// When no key is rare, run the first stage over all keys instead of returning nothing (the
    /// reference returns nothing). Default: yes.
    pub frequent_fallback: bool,
    /// Drop generated passage n-grams that end inside a word in most of their corpus
    /// occurrences (`" autoph"` of `" autophagy"`): rare as token strings, such fragments get
    /// the largest weights of Eq. 1-2 although they are no phrase (BENCHMARKS.md, "Where
    /// zero-shot SEAL loses"). Applied by the searcher, which knows the tokenizer. Not in SEAL;
    /// on by default because it raised zero-shot SEAL's nDCG@10 on both dev sets (SciFact train
    /// first 100: 0.465 → 0.483; NQ q0000-q0099: 0.470 → 0.490; BENCHMARKS.md, "Whole words").
    pub whole_words: bool,
    /// Pivoted length normalization of intersective scores, `b` in `[0, 1]`: a fully scored
    /// document's score (and every contribution to it) is divided by `1 − b + b·len/avg_len`
    /// (its tokens against the corpus's mean), as BM25 normalizes term frequencies. 0 is SEAL's
    /// behaviour. Not in SEAL, whose passages all have 100 words; where lengths vary (SciFact:
    /// 1,500-word abstracts beside a median of 192 words) a long document collects matches of
    /// generic n-grams by its length alone and tops unrelated queries (BENCHMARKS.md, "Length
    /// normalization"). LM+FM (one n-gram per document) is left as it is.
    pub length_norm: f64,
}

/// The default [`ScoringSettings::length_norm`], chosen on dev queries (BENCHMARKS.md, "Length
/// normalization").
pub const DEFAULT_LENGTH_NORM: f64 = 0.25;

impl Default for ScoringSettings {
    fn default() -> Self {
        ScoringSettings {
            alpha: 2.0,
            smoothing: 5.0,
            beta: 0.8,
            rare_threshold: 1500,
            max_occurrences: 1500,
            num_candidates: 1500,
            max_key_count: 10_000_000,
            ranking: Ranking::Intersective,
            unigram_scores: true,
            unigram_keys: true,
            max_unigrams: 5000,
            unigram_exponent: UnigramExponent::One,
            frequent_fallback: true,
            whole_words: true,
            length_norm: DEFAULT_LENGTH_NORM,
        }
    }
}

impl ScoringSettings {
    /// Checks that the settings make sense.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] naming the setting and its valid range.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::new(ErrorKind::InvalidInput, msg));
        if !(self.alpha.is_finite() && self.alpha >= 0.0 && self.alpha <= 16.0) {
            return bad(format!(
                "scoring alpha must be in [0, 16] (SEAL uses 2), got {}",
                self.alpha
            ));
        }
        if !(self.smoothing.is_finite() && self.smoothing >= 0.0) {
            return bad(format!(
                "scoring smoothing must be finite and >= 0 (SEAL uses 5), got {}",
                self.smoothing
            ));
        }
        if !(0.0..=1.0).contains(&self.length_norm) {
            return bad(format!(
                "length normalization b must be in [0, 1] (0: SEAL's behaviour), got {}",
                self.length_norm
            ));
        }
        if !(0.0..=1.0).contains(&self.beta) {
            return bad(format!(
                "scoring beta must be in [0, 1] (SEAL uses 0.8), got {}",
                self.beta
            ));
        }
        if self.max_occurrences == 0 {
            return bad("max occurrences must be at least 1 (SEAL uses 1500)".into());
        }
        if self.num_candidates == 0 {
            return bad("the number of candidates must be at least 1 (SEAL uses 1500)".into());
        }
        Ok(())
    }
}

/// Scores queries' keys against a corpus with validated [`ScoringSettings`]. Cheap to build,
/// immutable, shareable between threads.
#[derive(Debug, Clone, Default)]
pub struct Scorer {
    settings: ScoringSettings,
}

impl Scorer {
    /// A scorer with `settings`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if a setting is out of range (see [`ScoringSettings::validate`]).
    pub fn new(settings: ScoringSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Scorer { settings })
    }

    /// The settings.
    pub fn settings(&self) -> &ScoringSettings {
        &self.settings
    }

    /// Turns the decoder's candidates and the model's first-step unigram log-probabilities into the
    /// weighted keys of one query (see the module docs, step 1).
    ///
    /// `unigram_logprobs` may be sparse (e.g. the top 5,000 tokens) or the whole vocabulary; a token
    /// listed twice counts with its highest log-probability. Empty candidates are skipped.
    pub fn keys<C: CorpusView + ?Sized>(
        &self,
        corpus: &C,
        candidates: &[Candidate],
        unigram_logprobs: &[(TokenId, f64)],
    ) -> KeySet {
        keys::build(&self.settings, corpus, candidates, unigram_logprobs)
    }

    /// A key set from keys whose weights the caller has computed (any non-negative weights), and
    /// the unigram weights of uncovered tokens. For experiments with other weightings and for tests.
    /// Non-finite or negative weights count as 0.
    pub fn key_set(&self, keys: Vec<Key>, unigram_weights: Vec<(TokenId, f64)>) -> KeySet {
        KeySet::new(keys, unigram_weights, &self.settings)
    }

    /// Ranks the documents of `corpus` for one query's keys (module docs, steps 2-4): at most
    /// [`num_candidates`](ScoringSettings::num_candidates) documents, best first.
    pub fn rank<C: CorpusView + ?Sized>(&self, corpus: &C, keys: &KeySet) -> Vec<ScoredDoc> {
        rank::rank(&self.settings, corpus, keys)
    }

    /// Fully scores one document (step 3) given its forward tokens without the separator, as
    /// [`Scorer::rank`] does for each candidate.
    pub fn score_document(
        &self,
        keys: &KeySet,
        doc: DocId,
        tokens: &[TokenId],
        separator: Option<TokenId>,
    ) -> ScoredDoc {
        matcher::score_document(&self.settings, keys, doc, tokens, separator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_are_seal_and_bad_values_are_refused() {
        let s = ScoringSettings::default();
        assert_eq!((s.alpha, s.smoothing, s.beta), (2.0, 5.0, 0.8));
        assert_eq!((s.rare_threshold, s.max_occurrences, s.num_candidates), (1500, 1500, 1500));
        assert!(Scorer::new(s.clone()).is_ok());
        for bad in [
            ScoringSettings { beta: 1.5, ..s.clone() },
            ScoringSettings { alpha: f64::NAN, ..s.clone() },
            ScoringSettings { smoothing: -1.0, ..s.clone() },
            ScoringSettings { num_candidates: 0, ..s.clone() },
        ] {
            let err = Scorer::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
        assert_eq!("lm+fm".parse::<Ranking>().unwrap(), Ranking::LmFm);
        assert_eq!(
            Ranking::Intersective.to_string().parse::<Ranking>().unwrap(),
            Ranking::Intersective
        );
        assert!("bm25".parse::<Ranking>().is_err());
        let json = serde_json::to_string(&ScoringSettings { ranking: Ranking::LmFm, ..s }).unwrap();
        assert!(json.contains("\"lm+fm\""), "{json}");
        let back: ScoringSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ranking, Ranking::LmFm);
    }
}
