//! One query's keys: the candidate n-grams with their counts and weights, the unigram weights of
//! uncovered tokens, and the lookup structures the matcher needs.
//!
//! Not for: matching keys in documents (see `matcher`) or ranking (see `rank`).

use super::weight::{log_odds, ngram_weight};
use super::{CorpusView, ScoringSettings, UnigramExponent};
use crate::TokenId;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for `u32` token ids (one multiply, as in rustc's FxHash): the matcher looks up the
/// first-token map once per document token, and SipHash dominated that loop. Lookups only, so
/// no iteration order can leak into results.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A `HashMap` keyed by token ids with [`TokenHasher`].
pub(crate) type TokenMap<V> = HashMap<TokenId, V, BuildHasherDefault<TokenHasher>>;

/// An n-gram proposed for a query: its tokens and its log-probability given the query
/// (`Σ log p(token)`, SEAL.md §2).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The n-gram's token ids, forward.
    pub tokens: Vec<TokenId>,
    /// `log P(n|q)`, `≤ 0`.
    pub logprob: f64,
}

impl From<(Vec<TokenId>, f64)> for Candidate {
    fn from((tokens, logprob): (Vec<TokenId>, f64)) -> Self {
        Candidate { tokens, logprob }
    }
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOrigin {
    /// A candidate n-gram from the decoder.
    Candidate,
    /// One of the best unigrams of the model's first-step distribution, added as a key.
    Unigram,
}

/// A weighted n-gram of one query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Key {
    /// The n-gram's token ids, forward.
    pub tokens: Vec<TokenId>,
    /// `log P(n|q)`.
    pub logprob: f64,
    /// `F(n)`, its number of occurrences in the corpus.
    pub count: u64,
    /// Its weight: `max(0, log-odds)^α` (Eq. 2); for an added unigram, the unigram weight.
    pub weight: f64,
    /// Where it came from.
    pub origin: KeyOrigin,
}

/// A key that can contribute to a score, in matching order.
#[derive(Debug, Clone)]
pub(crate) struct ActiveKey {
    /// Index into [`KeySet::keys`].
    pub key: usize,
    pub weight: f64,
    /// The distinct token types of the key, sorted.
    pub types: Vec<TokenId>,
}

/// The keys of one query, ready for ranking. Built by [`super::Scorer::keys`] or
/// [`super::Scorer::key_set`], for the settings of that scorer.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Sorted by token; every weight is finite and positive.
    unigram_weights: Vec<(TokenId, f64)>,
    /// The same, for lookups once per uncovered token type of every scored document.
    unigram_lookup: TokenMap<f64>,
    /// Keys with a positive weight and at most `max_key_count` occurrences, sorted by weight
    /// (descending), then by index in `keys`: the order the greedy matcher visits them.
    pub(crate) active: Vec<ActiveKey>,
    /// For each token, the positions in `active` (ascending) of the keys that start with it.
    pub(crate) by_first_token: TokenMap<Vec<u32>>,
}

impl KeySet {
    pub(crate) fn new(
        mut keys: Vec<Key>,
        unigram_weights: Vec<(TokenId, f64)>,
        settings: &ScoringSettings,
    ) -> Self {
        for key in &mut keys {
            if !(key.weight.is_finite() && key.weight > 0.0) {
                key.weight = 0.0;
            }
        }
        let mut unigram_weights: Vec<(TokenId, f64)> =
            unigram_weights.into_iter().filter(|&(_, w)| w.is_finite() && w > 0.0).collect();
        // Stable sort, then keep the first entry of each token.
        unigram_weights.sort_by_key(|&(t, _)| t);
        unigram_weights.dedup_by_key(|&mut (t, _)| t);

        let mut active: Vec<ActiveKey> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                k.weight > 0.0 && !k.tokens.is_empty() && k.count <= settings.max_key_count
            })
            .map(|(i, k)| {
                let mut types = k.tokens.clone();
                types.sort_unstable();
                types.dedup();
                ActiveKey { key: i, weight: k.weight, types }
            })
            .collect();
        active.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.key.cmp(&b.key)));

        let mut by_first_token: TokenMap<Vec<u32>> = TokenMap::default();
        for (rank, a) in active.iter().enumerate() {
            by_first_token.entry(keys[a.key].tokens[0]).or_default().push(rank as u32);
        }
        let unigram_lookup = unigram_weights.iter().copied().collect();
        KeySet { keys, unigram_weights, unigram_lookup, active, by_first_token }
    }

    /// All keys: the deduplicated candidates in their given order, then the added unigrams (best
    /// first). [`super::Match::key`] indexes into this list. Includes keys of weight 0.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The unigram weights of uncovered tokens, by token id (positive weights only).
    pub fn unigram_weights(&self) -> &[(TokenId, f64)] {
        &self.unigram_weights
    }

    /// The unigram weight of `token` (0 if it has none).
    pub fn unigram_weight(&self, token: TokenId) -> f64 {
        self.unigram_lookup.get(&token).copied().unwrap_or(0.0)
    }

    /// The tokens of the `rank`-th key in matching order.
    pub(crate) fn active_tokens(&self, rank: usize) -> &[TokenId] {
        &self.keys[self.active[rank].key].tokens
    }
}

/// The `k` best distinct tokens of `logprobs` by log-probability (ties: lower id first), a token
/// listed twice counting with its best entry; `NaN`s are dropped. Sorted best first.
///
/// The model's first-step distribution covers the whole vocabulary (262k tokens for Gemma 3), so
/// this selects in linear time and sorts only the `k` selected.
fn best_unigrams(logprobs: &[(TokenId, f64)], k: usize) -> Vec<(TokenId, f64)> {
    let by_score = |a: &(TokenId, f64), b: &(TokenId, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let distinct_sorted = |mut v: Vec<(TokenId, f64)>| {
        v.sort_unstable_by(by_score);
        let mut seen = HashSet::new();
        v.retain(|&(t, _)| seen.insert(t));
        v
    };
    if k == 0 {
        return Vec::new();
    }
    let all: Vec<(TokenId, f64)> = logprobs.iter().copied().filter(|p| !p.1.is_nan()).collect();
    if all.len() <= k {
        return distinct_sorted(all);
    }
    let mut top = all.clone();
    top.select_nth_unstable_by(k - 1, by_score);
    top.truncate(k);
    let top = distinct_sorted(top);
    if top.len() == k {
        return top;
    }
    // Duplicates among the selected: fall back to sorting everything.
    let mut every = distinct_sorted(all);
    every.truncate(k);
    every
}

/// Step 1 of the module docs: weights for candidates and unigrams, unigram keys.
pub(crate) fn build<C: CorpusView + ?Sized>(
    settings: &ScoringSettings,
    corpus: &C,
    candidates: &[Candidate],
    unigram_logprobs: &[(TokenId, f64)],
) -> KeySet {
    let num_tokens = corpus.num_tokens();
    let mut seen: HashSet<&[TokenId]> = HashSet::new();
    let mut keys = Vec::new();
    for candidate in candidates {
        if candidate.tokens.is_empty() || !seen.insert(&candidate.tokens) {
            continue;
        }
        let count = corpus.count(&candidate.tokens);
        keys.push(Key {
            tokens: candidate.tokens.clone(),
            logprob: candidate.logprob,
            count,
            weight: ngram_weight(
                candidate.logprob,
                count,
                num_tokens,
                settings.alpha,
                settings.smoothing,
            ),
            origin: super::KeyOrigin::Candidate,
        });
    }
    let num_candidate_keys = keys.len();

    // (token, logprob, count, weight) of every unigram with a positive weight.
    let mut unigrams: Vec<(TokenId, f64, u64, f64)> = Vec::new();
    if settings.unigram_scores || settings.unigram_keys {
        let best = best_unigrams(unigram_logprobs, settings.max_unigrams);
        let key_unigrams: HashSet<TokenId> =
            keys.iter().filter(|k| k.tokens.len() == 1).map(|k| k.tokens[0]).collect();
        let separator = corpus.separator();
        for (token, logprob) in best {
            if key_unigrams.contains(&token) || Some(token) == separator {
                continue;
            }
            let count = corpus.count(&[token]);
            let odds = log_odds(logprob, count, num_tokens, settings.smoothing);
            if odds > 0.0 {
                let weight = match settings.unigram_exponent {
                    UnigramExponent::One => odds,
                    UnigramExponent::Alpha => odds.powf(settings.alpha),
                };
                unigrams.push((token, logprob, count, weight));
            }
        }
    }
    if settings.unigram_keys {
        let mut by_weight = unigrams.clone();
        by_weight.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
        for &(token, logprob, count, weight) in by_weight.iter().take(num_candidate_keys) {
            keys.push(Key {
                tokens: vec![token],
                logprob,
                count,
                weight,
                origin: super::KeyOrigin::Unigram,
            });
        }
    }
    let unigram_weights = if settings.unigram_scores {
        unigrams.iter().map(|&(t, _, _, w)| (t, w)).collect()
    } else {
        Vec::new()
    };
    KeySet::new(keys, unigram_weights, settings)
}

#[cfg(test)]
mod tests {
    use super::super::{NaiveCorpus, Scorer};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_deduplicated_weighted_and_joined_by_the_best_unigrams() {
        // N = 12 tokens + 2 separators = 14. Token 3 occurs 3 times, [3, 4] once, 9 never.
        let corpus = NaiveCorpus::new(vec![vec![3, 4, 5, 6, 7, 8], vec![3, 3, 5, 5, 6, 7]])
            .with_separator(1);
        let scorer = Scorer::default();
        let half = 0.5f64.ln();
        let candidates: Vec<Candidate> = vec![
            (vec![3, 4], half).into(),
            (vec![3, 4], -0.01).into(), // duplicate: the first wins
            (vec![9], half).into(),     // absent: weight 0, kept for display
            (vec![], 0.0).into(),       // skipped
        ];
        // Unigrams: 1 is the separator, 9 is a key, 5 and 6 get weights, 8 is too unlikely.
        let unigram_lps = [(5, -9.0), (1, -0.01), (9, -0.01), (6, half), (8, -20.0), (5, -0.1)];
        let keys = scorer.keys(&corpus, &candidates, &unigram_lps);

        // [3, 4]: F = 1 → prior odds (1+5)/(14−1) = 6/13; model odds 1 → w = ln(13/6)² = 0.5978...
        let k = &keys.keys()[0];
        assert_eq!((k.tokens.clone(), k.count), (vec![3, 4], 1));
        assert!((k.weight - (13.0f64 / 6.0).ln().powi(2)).abs() < 1e-12);
        assert_eq!((keys.keys()[1].tokens.clone(), keys.keys()[1].weight), (vec![9], 0.0));

        // 5: F = 3, lp −0.1 → model odds e^−0.1/(1 − e^−0.1) = 9.5083; prior 8/11 → log-odds
        //    ln(9.5083 · 11/8) = 2.5706 (not squared: quirk 5 kept).
        // 6: F = 2, odds 1, prior 7/12 → ln(12/7) = 0.5390.
        let w5 = (0.1f64.exp() - 1.0).recip().ln() + (11.0f64 / 8.0).ln();
        let w6 = (12.0f64 / 7.0).ln();
        assert_eq!(keys.unigram_weights().len(), 2);
        assert!((keys.unigram_weight(5) - w5).abs() < 1e-12, "{}", keys.unigram_weight(5));
        assert!((keys.unigram_weight(6) - w6).abs() < 1e-12);
        assert_eq!(keys.unigram_weight(1), 0.0);
        assert_eq!(keys.unigram_weight(9), 0.0);
        // Two candidate keys → the two best unigrams join, best first.
        let added: Vec<(Vec<TokenId>, KeyOrigin)> =
            keys.keys()[2..].iter().map(|k| (k.tokens.clone(), k.origin)).collect();
        assert_eq!(added, vec![(vec![5], KeyOrigin::Unigram), (vec![6], KeyOrigin::Unigram)]);
        assert_eq!(keys.keys().len(), 4);
        // Active order: by weight. w5 = 2.57 > w6 = 0.54 (0.539 < 0.598 = [3,4]).
        let order: Vec<usize> = keys.active.iter().map(|a| a.key).collect();
        assert_eq!(order, vec![2, 0, 3]);

        // Quirk 5 switched to "fixed": unigram weights squared.
        let alpha = Scorer::new(ScoringSettings {
            unigram_exponent: UnigramExponent::Alpha,
            ..Default::default()
        })
        .unwrap()
        .keys(&corpus, &candidates, &unigram_lps);
        assert!((alpha.unigram_weight(5) - w5 * w5).abs() < 1e-12);
    }

    #[test]
    fn best_unigrams_select_distinct_tokens() {
        let lps = [(1, -0.1), (1, -0.2), (2, -0.3), (3, -0.4), (4, f64::NAN), (5, -0.3)];
        assert_eq!(best_unigrams(&lps, 2), vec![(1, -0.1), (2, -0.3)]); // duplicate → fallback
        assert_eq!(best_unigrams(&lps, 3), vec![(1, -0.1), (2, -0.3), (5, -0.3)]);
        assert_eq!(best_unigrams(&lps, 9).len(), 4);
        assert!(best_unigrams(&lps, 0).is_empty());
    }

    #[test]
    fn unigram_settings_switch_their_parts_off() {
        let corpus = NaiveCorpus::new(vec![vec![3, 4, 5, 6, 7, 8]]);
        let candidates: Vec<Candidate> = vec![(vec![3, 4], -0.5).into()];
        let lps = [(5, -0.1), (6, -0.2)];
        let no_keys = Scorer::new(ScoringSettings { unigram_keys: false, ..Default::default() })
            .unwrap()
            .keys(&corpus, &candidates, &lps);
        assert_eq!(no_keys.keys().len(), 1);
        assert_eq!(no_keys.unigram_weights().len(), 2);
        let no_scores =
            Scorer::new(ScoringSettings { unigram_scores: false, ..Default::default() })
                .unwrap()
                .keys(&corpus, &candidates, &lps);
        assert_eq!(no_scores.keys().len(), 2); // one unigram per candidate key
        assert!(no_scores.unigram_weights().is_empty());
        let top1 = Scorer::new(ScoringSettings { max_unigrams: 1, ..Default::default() })
            .unwrap()
            .keys(&corpus, &candidates, &lps);
        assert_eq!(top1.unigram_weights().iter().map(|p| p.0).collect::<Vec<_>>(), vec![5]);
    }

    proptest! {
        #[test]
        fn keys_follow_the_rules(
            docs in prop::collection::vec(prop::collection::vec(1u32..8, 0..12), 1..5),
            candidates in prop::collection::vec((prop::collection::vec(0u32..8, 0..3), -5.0f64..0.0), 0..10),
            unigram_lps in prop::collection::vec((0u32..9, -5.0f64..0.0), 0..12),
            max_unigrams in 1usize..8,
        ) {
            let corpus = NaiveCorpus::new(docs).with_separator(0);
            let n = corpus.num_tokens();
            let settings = ScoringSettings { max_unigrams, ..Default::default() };
            let candidates: Vec<Candidate> = candidates.into_iter().map(Candidate::from).collect();
            let keys = Scorer::new(settings).unwrap().keys(&corpus, &candidates, &unigram_lps);

            // Candidates: distinct, non-empty, first wins, in order, weight from Eqs. 1-2.
            let mut expected: Vec<(Vec<TokenId>, f64)> = Vec::new();
            for c in &candidates {
                if !c.tokens.is_empty() && !expected.iter().any(|(t, _)| *t == c.tokens) {
                    expected.push((c.tokens.clone(), ngram_weight(c.logprob, corpus.count(&c.tokens), n, 2.0, 5.0)));
                }
            }
            let m = expected.len();
            // Unigrams: best listing of a token, best `max_unigrams` log-probabilities, not a
            // candidate unigram, not the separator, positive plain log-odds.
            let mut listed: Vec<(TokenId, f64)> = Vec::new();
            for &(t, lp) in &unigram_lps {
                match listed.iter_mut().find(|l| l.0 == t) {
                    Some(l) => l.1 = l.1.max(lp),
                    None => listed.push((t, lp)),
                }
            }
            listed.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            listed.truncate(max_unigrams);
            let mut weights: Vec<(TokenId, f64)> = listed
                .iter()
                .filter(|(t, _)| *t != 0 && !expected[..m].iter().any(|(k, _)| *k == vec![*t]))
                .map(|&(t, lp)| (t, log_odds(lp, corpus.count(&[t]), n, 5.0)))
                .filter(|&(_, w)| w > 0.0)
                .collect();
            let mut best = weights.clone();
            best.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            expected.extend(best.iter().take(m).map(|&(t, w)| (vec![t], w)));
            // Weights within 1e-12: `powf(α)` may be folded into `w * w` where α is a literal.
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
            let got = keys.keys();
            prop_assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                prop_assert!(g.tokens == e.0 && close(g.weight, e.1), "got {:?} expected {:?}", g, e);
            }
            weights.sort_by_key(|w| w.0);
            prop_assert_eq!(keys.unigram_weights().len(), weights.len());
            for (g, e) in keys.unigram_weights().iter().zip(&weights) {
                prop_assert!(g.0 == e.0 && close(g.1, e.1), "got {:?} expected {:?}", g, e);
            }
        }
    }
}
