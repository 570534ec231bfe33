//! Full scoring of one document against all of a query's keys: the greedy non-overlapping matcher
//! of the intersective ranking (Eqs. 3-4) and the best-key score of LM+FM.
//!
//! Not for: choosing which documents to score (see `rank`).

use super::evidence::{Match, ScoredDoc, UnigramMatch};
use super::keys::KeySet;
use super::weight::coverage_factor;
use super::{Ranking, ScoringSettings};
use crate::{DocId, TokenId};

/// The token types covered so far in one document (`C` of Eq. 4): a sorted vector, which beats
/// a hash set at the few dozen types a passage collects.
#[derive(Debug, Default)]
pub(crate) struct TypeSet(Vec<TokenId>);

impl TypeSet {
    pub(crate) fn contains(&self, token: TokenId) -> bool {
        self.0.binary_search(&token).is_ok()
    }

    pub(crate) fn insert_all(&mut self, tokens: &[TokenId]) {
        for &t in tokens {
            if let Err(i) = self.0.binary_search(&t) {
                self.0.insert(i, t);
            }
        }
    }
}

/// Every occurrence of every active key in `seq`, as (rank in `keys.active`, position), sorted.
///
/// Keys are found through the first-token map, so the cost is about `len(seq) ×` (keys sharing a
/// first token) `×` key length, not `len(seq) × keys`.
fn find_occurrences(keys: &KeySet, seq: &[TokenId]) -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for (pos, token) in seq.iter().enumerate() {
        if let Some(ranks) = keys.by_first_token.get(token) {
            for &rank in ranks {
                if seq[pos..].starts_with(keys.active_tokens(rank as usize)) {
                    found.push((rank, pos as u32));
                }
            }
        }
    }
    found.sort_unstable();
    found
}

/// Maps a span `[pos, pos + len)` of `[separator] + tokens` (shift 1) or `tokens` (shift 0) to
/// (start, len) in `tokens`, leaving out the separator slot.
fn doc_span(pos: usize, len: usize, shift: usize) -> (usize, usize) {
    let start = pos.max(shift);
    (start - shift, pos + len - start)
}

pub(crate) fn score_document(
    settings: &ScoringSettings,
    keys: &KeySet,
    doc: DocId,
    tokens: &[TokenId],
    separator: Option<TokenId>,
) -> ScoredDoc {
    let shift = usize::from(separator.is_some());
    let seq: Vec<TokenId> = separator.into_iter().chain(tokens.iter().copied()).collect();
    let occurrences = find_occurrences(keys, &seq);
    let mut free = vec![true; seq.len()];
    let mut result = ScoredDoc { doc, score: 0.0, matches: Vec::new(), unigrams: Vec::new() };

    match settings.ranking {
        Ranking::LmFm => {
            // The best key is the first in matching order that occurs at all.
            let Some(&(best, _)) = occurrences.first() else { return result };
            let active = &keys.active[best as usize];
            let len = keys.active_tokens(best as usize).len();
            for &(_, pos) in occurrences.iter().take_while(|&&(rank, _)| rank == best) {
                let pos = pos as usize;
                if free[pos..pos + len].iter().all(|&f| f) {
                    free[pos..pos + len].fill(false);
                    let contribution = if result.matches.is_empty() { active.weight } else { 0.0 };
                    let (start, len) = doc_span(pos, len, shift);
                    result.matches.push(Match { key: active.key, start, len, contribution });
                }
            }
            result.score = active.weight;
        }
        Ranking::Intersective => {
            let mut covered = TypeSet::default();
            let mut last_accepted: Option<u32> = None;
            for &(rank, pos) in &occurrences {
                let active = &keys.active[rank as usize];
                let (pos, len) = (pos as usize, keys.active_tokens(rank as usize).len());
                let repeat = last_accepted == Some(rank);
                let contribution = if repeat {
                    0.0
                } else {
                    active.weight
                        * coverage_factor(&active.types, |t| covered.contains(t), settings.beta)
                };
                // A key whose contribution would be nothing (β = 1, all types covered) does not
                // take its tokens either, as in the reference.
                if !repeat && contribution <= 0.0 {
                    continue;
                }
                if !free[pos..pos + len].iter().all(|&f| f) {
                    continue;
                }
                free[pos..pos + len].fill(false);
                if !repeat {
                    covered.insert_all(&active.types);
                    last_accepted = Some(rank);
                    result.score += contribution;
                }
                let (start, len) = doc_span(pos, len, shift);
                result.matches.push(Match { key: active.key, start, len, contribution });
            }
            if !keys.unigram_weights().is_empty() {
                // Uncovered token types, each once, in order of first uncovered occurrence.
                let mut uncovered: Vec<(TokenId, u32)> = (shift..seq.len())
                    .filter(|&p| free[p])
                    .map(|p| (seq[p], (p - shift) as u32))
                    .collect();
                uncovered.sort_unstable();
                let mut unigrams = Vec::new();
                for group in uncovered.chunk_by(|a, b| a.0 == b.0) {
                    let token = group[0].0;
                    let weight = keys.unigram_weight(token);
                    let contribution =
                        weight * coverage_factor(&[token], |t| covered.contains(t), settings.beta);
                    if contribution > 0.0 {
                        let starts = group.iter().map(|&(_, p)| p as usize).collect();
                        unigrams.push(UnigramMatch { token, starts, contribution });
                    }
                }
                unigrams.sort_unstable_by_key(|u| u.starts[0]);
                result.score += unigrams.iter().map(|u| u.contribution).sum::<f64>();
                result.unigrams = unigrams;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::super::{Key, KeyOrigin, NaiveCorpus, Scorer};
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn key(tokens: &[TokenId], weight: f64) -> Key {
        Key {
            tokens: tokens.to_vec(),
            logprob: -1.0,
            count: 1,
            weight,
            origin: KeyOrigin::Candidate,
        }
    }

    fn scorer(ranking: Ranking, beta: f64) -> Scorer {
        Scorer::new(ScoringSettings { ranking, beta, ..Default::default() }).unwrap()
    }

    #[test]
    fn intersective_by_hand() {
        // doc:        10 11 12 13 11 12 14      (positions 0..7)
        // keys:       A = [11 12] w 4, B = [12 13 11] w 3, C = [14] w 1, D = [11] w 2
        // unigram weights: 10 → 0.5, 13 → 0.7, 12 → 0.25
        // Greedy (β = 0.8):
        //   A at 1: free, C = {}, factor 1 → +4; C = {11, 12}. A at 4: free, repeat → +0.
        //   B at 2: overlaps A at 1-2 → rejected.
        //   D at 1, 4: covered → rejected (D's factor is 0.2, would have been +0.4).
        //   C at 6: free, {14} new → +1; C = {11, 12, 14}.
        // Uncovered: position 0 (10) and 3 (13): 10 → 0.5·1, 13 → 0.7·1 (neither in C).
        // Total = 4 + 0 + 1 + 0.5 + 0.7 = 6.2.
        let s = scorer(Ranking::Intersective, 0.8);
        let keys = s.key_set(
            vec![key(&[11, 12], 4.0), key(&[12, 13, 11], 3.0), key(&[14], 1.0), key(&[11], 2.0)],
            vec![(10, 0.5), (13, 0.7), (12, 0.25)],
        );
        let doc = s.score_document(&keys, 7, &[10, 11, 12, 13, 11, 12, 14], None);
        assert!((doc.score - 6.2).abs() < 1e-12, "{}", doc.score);
        let m: Vec<(usize, usize, usize, f64)> =
            doc.matches.iter().map(|m| (m.key, m.start, m.len, m.contribution)).collect();
        assert_eq!(m, vec![(0, 1, 2, 4.0), (0, 4, 2, 0.0), (2, 6, 1, 1.0)]);
        let u: Vec<(TokenId, Vec<usize>, f64)> =
            doc.unigrams.iter().map(|u| (u.token, u.starts.clone(), u.contribution)).collect();
        assert_eq!(u, vec![(10, vec![0], 0.5), (13, vec![3], 0.7)]);
        assert_eq!(doc.doc, 7);
    }

    #[test]
    fn coverage_discounts_keys_and_uncovered_repeats() {
        // doc: 1 2 3 9 2 3 5 1
        // A = [1 2 3] w 10, B = [2 3 5] w 6, C = [1] w 1 (C after B by weight).
        //   A at 0 → +10, C = {1,2,3}.
        //   B at 4: tokens 4-6 free; types {2,3,5}, 1 new of 3 → factor 0.2 + 0.8/3 = 0.4667
        //     → +6·0.4667 = 2.8; C = {1,2,3,5}.
        //   C = [1] at 0: covered; at 7: free; {1} covered → factor 0.2 → +0.2.
        // Uncovered: 9 at 3, weight 1.5, not in C → +1.5. Total = 10 + 2.8 + 0.2 + 1.5 = 14.5.
        let s = scorer(Ranking::Intersective, 0.8);
        let keys = s.key_set(
            vec![key(&[1, 2, 3], 10.0), key(&[2, 3, 5], 6.0), key(&[1], 1.0)],
            vec![(9, 1.5)],
        );
        let doc = s.score_document(&keys, 0, &[1, 2, 3, 9, 2, 3, 5, 1], None);
        assert!((doc.score - 14.5).abs() < 1e-12, "{}", doc.score);
        // The same document where the uncovered 9 is a 2 instead: 2 ∈ C → 1.5 · 0.2 = 0.3.
        let keys = s.key_set(
            vec![key(&[1, 2, 3], 10.0), key(&[2, 3, 5], 6.0), key(&[1], 1.0)],
            vec![(2, 1.5)],
        );
        let doc = s.score_document(&keys, 0, &[1, 2, 3, 2, 2, 3, 5, 1], None);
        assert!((doc.score - (10.0 + 2.8 + 0.2 + 0.3)).abs() < 1e-12, "{}", doc.score);
    }

    #[test]
    fn title_keys_match_through_the_separator_and_spans_leave_it_out() {
        // separator 0; doc "7 8 @@(50) 9"; title key [0 7 8 50] w 5; key [9] w 1.
        let s = scorer(Ranking::Intersective, 0.8);
        let keys = s.key_set(vec![key(&[0, 7, 8, 50], 5.0), key(&[9], 1.0)], vec![(0, 3.0)]);
        let doc = s.score_document(&keys, 0, &[7, 8, 50, 9], Some(0));
        assert!((doc.score - 6.0).abs() < 1e-12);
        assert_eq!((doc.matches[0].start, doc.matches[0].len), (0, 3));
        assert_eq!((doc.matches[1].start, doc.matches[1].len), (3, 1));
        // Without the separator the title key cannot match; the separator is never "uncovered".
        let doc = s.score_document(&keys, 0, &[7, 8, 50, 9], None);
        assert!((doc.score - 1.0).abs() < 1e-12);
    }

    #[test]
    fn lm_fm_scores_the_best_key_present() {
        let s = scorer(Ranking::LmFm, 0.8);
        let keys =
            s.key_set(vec![key(&[1, 2], 3.0), key(&[5], 7.0), key(&[2], 1.0)], vec![(9, 100.0)]);
        let doc = s.score_document(&keys, 0, &[1, 2, 9, 1, 2, 1, 2, 2], None);
        assert_eq!(doc.score, 3.0);
        let m: Vec<(usize, usize, f64)> =
            doc.matches.iter().map(|m| (m.key, m.start, m.contribution)).collect();
        assert_eq!(m, vec![(0, 0, 3.0), (0, 3, 0.0), (0, 5, 0.0)]);
        assert!(doc.unigrams.is_empty());
        assert_eq!(s.score_document(&keys, 0, &[9, 9], None).score, 0.0);
    }

    /// The intersective score written straight from the equations: keys one by one in weight
    /// order, each occurrence found by brute force and tested against every accepted span.
    fn oracle_intersective(
        keys: &[Key],
        unigram: &[(TokenId, f64)],
        beta: f64,
        seq: &[TokenId],
    ) -> f64 {
        let mut order: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].weight > 0.0).collect();
        order
            .sort_by(|&a, &b| keys[b].weight.partial_cmp(&keys[a].weight).unwrap().then(a.cmp(&b)));
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut covered: Vec<TokenId> = Vec::new();
        let mut score = 0.0;
        for i in order {
            let n = &keys[i].tokens;
            let types: Vec<TokenId> = {
                let mut t = n.clone();
                t.sort();
                t.dedup();
                t
            };
            let new = types.iter().filter(|t| !covered.contains(t)).count();
            let contribution =
                keys[i].weight * (1.0 - beta + beta * new as f64 / types.len() as f64);
            if contribution <= 0.0 {
                continue;
            }
            let mut accepted_any = false;
            for p in 0..seq.len() {
                if p + n.len() > seq.len() || seq[p..p + n.len()] != n[..] {
                    continue;
                }
                let overlaps = spans.iter().any(|&(s, e)| p < e && s < p + n.len());
                if !overlaps {
                    spans.push((p, p + n.len()));
                    accepted_any = true;
                }
            }
            if accepted_any {
                score += contribution;
                covered.extend(types);
            }
        }
        let mut seen: Vec<TokenId> = Vec::new();
        for (p, &t) in seq.iter().enumerate() {
            let free = !spans.iter().any(|&(s, e)| s <= p && p < e);
            if free && !seen.contains(&t) {
                seen.push(t);
                let w = unigram.iter().find(|u| u.0 == t).map_or(0.0, |u| u.1);
                let factor = if covered.contains(&t) { 1.0 - beta } else { 1.0 };
                score += w * factor;
            }
        }
        score
    }

    fn arb_keys() -> impl Strategy<Value = Vec<Key>> {
        // Small alphabet so that keys overlap and repeat; weights from a small set so ties happen.
        prop::collection::vec(
            (
                prop::collection::vec(0u32..5, 1..4),
                prop::sample::select(vec![0.0, 0.5, 1.0, 2.0, 3.0, 7.5]),
            ),
            0..12,
        )
        .prop_map(|v| {
            let mut seen = HashSet::new();
            v.into_iter().filter(|(t, _)| seen.insert(t.clone())).map(|(t, w)| key(&t, w)).collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn intersective_equals_the_equations(
            keys in arb_keys(),
            unigram in prop::collection::vec((0u32..6, 0.0f64..2.0), 0..6),
            doc in prop::collection::vec(0u32..6, 0..30),
            beta in prop::sample::select(vec![0.0, 0.3, 0.8, 1.0]),
        ) {
            let s = scorer(Ranking::Intersective, beta);
            let mut dedup_unigram = unigram.clone();
            dedup_unigram.sort_by_key(|u| u.0);
            dedup_unigram.dedup_by_key(|u| u.0);
            let expected = oracle_intersective(&keys, &dedup_unigram, beta, &doc);
            let set = s.key_set(keys.clone(), dedup_unigram.clone());
            let got = s.score_document(&set, 0, &doc, None);
            prop_assert!((got.score - expected).abs() < 1e-9, "got {} expected {}", got.score, expected);
            // Evidence: contributions sum to the score, spans are disjoint and hold their key.
            let total: f64 = got.matches.iter().map(|m| m.contribution).sum::<f64>()
                + got.unigrams.iter().map(|u| u.contribution).sum::<f64>();
            prop_assert!((total - got.score).abs() < 1e-9);
            let mut taken = vec![false; doc.len()];
            for m in &got.matches {
                prop_assert_eq!(&doc[m.start..m.start + m.len], &set.keys()[m.key].tokens[..]);
                for slot in &mut taken[m.start..m.start + m.len] {
                    prop_assert!(!*slot);
                    *slot = true;
                }
            }
            for u in &got.unigrams {
                for &p in &u.starts {
                    prop_assert!(!taken[p] && doc[p] == u.token);
                }
            }
        }

        #[test]
        fn lm_fm_equals_the_naive_max(keys in arb_keys(), doc in prop::collection::vec(0u32..6, 0..30)) {
            let s = scorer(Ranking::LmFm, 0.8);
            let expected = keys
                .iter()
                .filter(|k| doc.windows(k.tokens.len()).any(|w| w == &k.tokens[..]))
                .map(|k| k.weight)
                .fold(0.0, f64::max);
            let got = s.score_document(&s.key_set(keys, vec![]), 0, &doc, None);
            prop_assert_eq!(got.score, expected);
        }

        #[test]
        fn a_separator_prefix_changes_nothing_for_keys_without_it(
            keys in arb_keys(),
            doc in prop::collection::vec(0u32..6, 0..30),
        ) {
            // Keys never contain token 99, so matching [99] + doc must give the same result.
            let s = scorer(Ranking::Intersective, 0.8);
            let set = s.key_set(keys, vec![(1, 0.5), (99, 10.0)]);
            let plain = s.score_document(&set, 0, &doc, None);
            let with_sep = s.score_document(&set, 0, &doc, Some(99));
            prop_assert_eq!(plain, with_sep);
        }
    }

    #[test]
    fn naive_corpus_documents_score_like_their_tokens() {
        let corpus = NaiveCorpus::new(vec![vec![1, 2, 3]]);
        let s = scorer(Ranking::Intersective, 0.8);
        let keys = s.key_set(vec![key(&[2, 3], 1.0)], vec![]);
        assert_eq!(
            s.score_document(&keys, 0, &super::super::CorpusView::doc_tokens(&corpus, 0), None)
                .score,
            1.0
        );
    }
}
