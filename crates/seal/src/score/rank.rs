//! Ranking one query: the first stage (rare keys locate candidate documents), then full scoring of
//! the best candidates.
//!
//! Not for: the per-document matcher itself (see `matcher`), the result types (`evidence`).

use super::evidence::ScoredDoc;
use super::keys::KeySet;
use super::matcher::{self, TypeSet};
use super::weight::coverage_factor;
use super::{CorpusView, Ranking, ScoringSettings};
use crate::DocId;
use std::collections::BTreeMap;

/// First-stage state of one candidate document.
#[derive(Debug, Default)]
struct FirstStage {
    /// Accepted occurrence intervals `[start, end)` in `[separator] + tokens` coordinates, sorted,
    /// pairwise disjoint.
    covered: Vec<(usize, usize)>,
    /// Ranks (into `KeySet::active`) of the distinct keys counted, in counting order.
    counted: Vec<u32>,
    /// The best weight of any located key (LM+FM).
    best: f64,
}

impl FirstStage {
    /// Marks `[start, end)` covered if it overlaps nothing covered yet; says whether it did.
    fn cover(&mut self, start: usize, end: usize) -> bool {
        // The first interval that ends after `start` is the only one that can overlap.
        let i = self.covered.partition_point(|&(_, e)| e <= start);
        if i < self.covered.len() && self.covered[i].0 < end {
            return false;
        }
        self.covered.insert(i, (start, end));
        true
    }
}

pub(crate) fn rank<C: CorpusView + ?Sized>(
    settings: &ScoringSettings,
    corpus: &C,
    keys: &KeySet,
) -> Vec<ScoredDoc> {
    let separator = corpus.separator();
    let normalize = settings.length_norm > 0.0 && settings.ranking == Ranking::Intersective;
    let mean_len = corpus.mean_doc_len();
    let mut results: Vec<ScoredDoc> = first_stage(settings, corpus, keys)
        .into_iter()
        .map(|(doc, _)| {
            let tokens = corpus.doc_tokens(doc);
            let mut scored = matcher::score_document(settings, keys, doc, &tokens, separator);
            if normalize {
                let b = settings.length_norm;
                scored.scale(1.0 / (1.0 - b + b * tokens.len() as f64 / mean_len));
            }
            scored
        })
        .collect();
    results.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
    results
}

/// The documents to score fully, with their first-stage scores, best first (ties by id).
fn first_stage<C: CorpusView + ?Sized>(
    settings: &ScoringSettings,
    corpus: &C,
    keys: &KeySet,
) -> Vec<(DocId, f64)> {
    let separator = corpus.separator();
    let rare: Vec<u32> = (0..keys.active.len() as u32)
        .filter(|&r| keys.keys()[keys.active[r as usize].key].count <= settings.rare_threshold)
        .collect();
    let first_stage_keys = if rare.is_empty() && settings.frequent_fallback {
        (0..keys.active.len() as u32).collect()
    } else {
        rare
    };

    // First stage. A BTreeMap so that documents come out in id order.
    let mut stage: BTreeMap<DocId, FirstStage> = BTreeMap::new();
    for rank in first_stage_keys {
        let active = &keys.active[rank as usize];
        let tokens = keys.active_tokens(rank as usize);
        let title_key = separator.is_some() && separator == tokens.first().copied();
        let mut hits = corpus.occurrences(tokens, settings.max_occurrences);
        // Sorted so that the outcome does not depend on the index's order of occurrences.
        hits.sort_unstable();
        hits.dedup();
        for (doc, offset) in hits {
            // Exact intervals in `[separator] + tokens` coordinates (quirk 2 fixed).
            let start = if title_key { 0 } else { offset.saturating_add(1) };
            let end = start.saturating_add(tokens.len());
            let state = stage.entry(doc).or_default();
            state.best = state.best.max(active.weight);
            if state.cover(start, end) && state.counted.last() != Some(&rank) {
                state.counted.push(rank);
            }
        }
    }

    let mut candidates: Vec<(DocId, f64)> = stage
        .into_iter()
        .map(|(doc, state)| {
            let score = match settings.ranking {
                Ranking::LmFm => state.best,
                Ranking::Intersective => {
                    let mut covered = TypeSet::default();
                    let mut score = 0.0;
                    for &rank in &state.counted {
                        let active = &keys.active[rank as usize];
                        score += active.weight
                            * coverage_factor(
                                &active.types,
                                |t| covered.contains(t),
                                settings.beta,
                            );
                        covered.insert_all(&active.types);
                    }
                    score
                }
            };
            (doc, score)
        })
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    candidates.truncate(settings.num_candidates);
    candidates
}

#[cfg(test)]
mod tests {
    use super::super::{Candidate, Key, KeyOrigin, NaiveCorpus, Scorer};
    use super::*;
    use crate::TokenId;
    use proptest::prelude::*;

    fn key(tokens: &[TokenId], weight: f64, count: u64) -> Key {
        Key { tokens: tokens.to_vec(), logprob: -1.0, count, weight, origin: KeyOrigin::Candidate }
    }

    /// SEAL's own scoring: no length normalization (the tests below check SEAL's two stages).
    fn seal_settings() -> ScoringSettings {
        ScoringSettings { length_norm: 0.0, ..ScoringSettings::default() }
    }

    fn scorer(settings: ScoringSettings) -> Scorer {
        Scorer::new(settings).unwrap()
    }

    #[test]
    fn first_stage_cover_is_exact() {
        let mut s = FirstStage::default();
        assert!(s.cover(5, 8));
        assert!(!s.cover(7, 9));
        assert!(!s.cover(3, 6));
        assert!(!s.cover(6, 7));
        assert!(s.cover(8, 10)); // touching is not overlapping
        assert!(s.cover(2, 5));
        assert!(!s.cover(0, 20));
        assert_eq!(s.covered, vec![(2, 5), (5, 8), (8, 10)]);
    }

    #[test]
    fn two_stages_by_hand() {
        // doc 0: 1 2 3 4        doc 1: 5 6 7 4      doc 2: 8 8 8 8     doc 3: 2 3 9 9
        // Keys (weight, count): A = [2 3] (5, 2), B = [3 4] (4, 1), C = [4] (1, 2 → frequent with
        // rare_threshold 1), D = [9] (0.5, 2).
        // With rare_threshold 1, only B is rare → first stage finds doc 0 only (B at 2..4):
        // full scoring of doc 0: A at 1 → +5, C = {2,3}; B at 2 overlaps; C = [4] at 3 → +1.
        let corpus = NaiveCorpus::new(vec![
            vec![1, 2, 3, 4],
            vec![5, 6, 7, 4],
            vec![8, 8, 8, 8],
            vec![2, 3, 9, 9],
        ]);
        let keys =
            vec![key(&[2, 3], 5.0, 2), key(&[3, 4], 4.0, 1), key(&[4], 1.0, 2), key(&[9], 0.5, 2)];
        let s = scorer(ScoringSettings { rare_threshold: 1, ..seal_settings() });
        let ranked = s.rank(&corpus, &s.key_set(keys.clone(), vec![]));
        assert_eq!(ranked.iter().map(|d| (d.doc, d.score)).collect::<Vec<_>>(), vec![(0, 6.0)]);

        // rare_threshold 2: A, B, C, D rare → docs 0, 1, 3 are candidates.
        // doc 0 = 6 (above); doc 1: C → 1; doc 3: A → +5, D at 2 → +0.5 ({9} new), D at 3 repeat.
        let s = scorer(ScoringSettings { rare_threshold: 2, ..seal_settings() });
        let ranked = s.rank(&corpus, &s.key_set(keys.clone(), vec![]));
        assert_eq!(
            ranked.iter().map(|d| (d.doc, d.score)).collect::<Vec<_>>(),
            vec![(0, 6.0), (3, 5.5), (1, 1.0)]
        );

        // num_candidates 2: first-stage scores: doc 0: A (5) then B at 2..4 overlaps A at 1..3
        // (exact overlap: quirk 2 fixed), C at 3 overlaps B? no: B was not accepted, so C at
        // 3..4 is free → 5 + 1·(1 − 0.8 + 0.8·1) = 6; doc 3: A 5 + D 0.5 = 5.5; doc 1: C = 1.
        // → docs 0 and 3 are fully scored, doc 1 is cut.
        let s = scorer(ScoringSettings { rare_threshold: 2, num_candidates: 2, ..seal_settings() });
        let ranked = s.rank(&corpus, &s.key_set(keys.clone(), vec![]));
        assert_eq!(ranked.iter().map(|d| d.doc).collect::<Vec<_>>(), vec![0, 3]);

        // No rare key at all (rare_threshold 0): the fallback uses every key; without it, nothing.
        let s = scorer(ScoringSettings { rare_threshold: 0, ..seal_settings() });
        assert_eq!(s.rank(&corpus, &s.key_set(keys.clone(), vec![])).len(), 3);
        let s = scorer(ScoringSettings {
            rare_threshold: 0,
            frequent_fallback: false,
            ..seal_settings()
        });
        assert!(s.rank(&corpus, &s.key_set(keys, vec![])).is_empty());
    }

    #[test]
    fn first_stage_overlap_is_exact_for_keys_of_different_lengths() {
        // doc 0: 1 2 3 4, keys Y = [1 2 3] (w 4) and X = [4] (w 3): exact intervals 0..3 and 3..4
        // are disjoint → first-stage score 4 + 3·1 = 7.
        // The reference locates the *reversed* match (doc reversed: 4 3 2 1, X at 0..1, Y at
        // 1..4) and shifts it by −len: X → −1..0, Y → −2..1, which overlap, so X would not count
        // and doc 0 would get 4.
        // doc 1: 7 8 with key [7 8] (w 6.5). With one candidate slot, exact overlap keeps doc 0
        // (7 > 6.5); the shifted intervals would have kept doc 1 (4 < 6.5).
        let corpus = NaiveCorpus::new(vec![vec![1, 2, 3, 4], vec![7, 8]]);
        let keys = vec![key(&[1, 2, 3], 4.0, 1), key(&[4], 3.0, 1), key(&[7, 8], 6.5, 1)];
        let s = scorer(ScoringSettings { num_candidates: 1, ..seal_settings() });
        let ranked = s.rank(&corpus, &s.key_set(keys, vec![]));
        assert_eq!(ranked.iter().map(|d| (d.doc, d.score)).collect::<Vec<_>>(), vec![(0, 7.0)]);
    }

    #[test]
    fn ties_are_broken_by_doc_id() {
        let corpus = NaiveCorpus::new(vec![vec![3, 1], vec![1, 2], vec![1], vec![9]]);
        let s = scorer(seal_settings());
        let ranked = s.rank(&corpus, &s.key_set(vec![key(&[1], 2.0, 3)], vec![]));
        assert_eq!(ranked.iter().map(|d| d.doc).collect::<Vec<_>>(), vec![0, 1, 2]);
        let s = scorer(ScoringSettings { num_candidates: 2, ..seal_settings() });
        let ranked = s.rank(&corpus, &s.key_set(vec![key(&[1], 2.0, 3)], vec![]));
        assert_eq!(ranked.iter().map(|d| d.doc).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn title_keys_find_their_document_in_the_first_stage() {
        // separator 0, titles end with 50 (the "@@" delimiter).
        let corpus =
            NaiveCorpus::new(vec![vec![7, 8, 50, 9, 9], vec![9, 50, 7, 8]]).with_separator(0);
        let candidates: Vec<Candidate> =
            vec![(vec![0, 7, 8, 50], -0.2).into(), (vec![7, 8], -0.5).into()];
        let s = scorer(seal_settings());
        let keys = s.keys(&corpus, &candidates, &[]);
        let ranked = s.rank(&corpus, &keys);
        assert_eq!(ranked[0].doc, 0);
        assert_eq!(
            (ranked[0].matches[0].key, ranked[0].matches[0].start, ranked[0].matches[0].len),
            (0, 0, 3)
        );
        assert!(ranked[0].score > ranked[1].score);
    }

    fn arb_corpus() -> impl Strategy<Value = Vec<Vec<TokenId>>> {
        prop::collection::vec(prop::collection::vec(1u32..7, 0..15), 1..8)
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((prop::collection::vec(0u32..7, 1..4), -6.0f64..0.0), 0..15)
            .prop_map(|v| v.into_iter().map(Candidate::from).collect())
    }

    /// The first stage written from its description: rare keys in weight order, their first
    /// `limit` occurrences in (document, position) order, an occurrence counts if its exact
    /// interval overlaps no earlier counted one in that document, each key once per document;
    /// then the coverage-weighted sum (or the best weight for LM+FM). Returns the documents that
    /// go on to full scoring with their first-stage scores, in first-stage order.
    fn oracle_first_stage(
        docs: &[Vec<TokenId>],
        separator: TokenId,
        keys: &[Key],
        settings: &ScoringSettings,
    ) -> Vec<(DocId, f64)> {
        let mut order: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].weight > 0.0).collect();
        order
            .sort_by(|&a, &b| keys[b].weight.partial_cmp(&keys[a].weight).unwrap().then(a.cmp(&b)));
        let mut rare: Vec<usize> =
            order.iter().copied().filter(|&i| keys[i].count <= settings.rare_threshold).collect();
        if rare.is_empty() && settings.frequent_fallback {
            rare = order;
        }
        let seqs: Vec<Vec<TokenId>> = docs
            .iter()
            .map(|d| std::iter::once(separator).chain(d.iter().copied()).collect())
            .collect();
        let mut spans: Vec<Vec<(usize, usize)>> = vec![Vec::new(); docs.len()];
        let mut counted: Vec<Vec<usize>> = vec![Vec::new(); docs.len()];
        let mut best = vec![0.0f64; docs.len()];
        let mut hit = vec![false; docs.len()];
        for &k in &rare {
            let n = &keys[k].tokens;
            let mut found = 0;
            for (d, seq) in seqs.iter().enumerate() {
                for p in 0..seq.len() {
                    if found == settings.max_occurrences
                        || p + n.len() > seq.len()
                        || seq[p..p + n.len()] != n[..]
                    {
                        continue;
                    }
                    found += 1;
                    hit[d] = true;
                    best[d] = best[d].max(keys[k].weight);
                    if spans[d].iter().all(|&(s, e)| e <= p || p + n.len() <= s) {
                        spans[d].push((p, p + n.len()));
                        if !counted[d].contains(&k) {
                            counted[d].push(k);
                        }
                    }
                }
            }
        }
        let mut scored: Vec<(DocId, f64)> = (0..docs.len())
            .filter(|&d| hit[d])
            .map(|d| {
                let score = if settings.ranking == Ranking::LmFm {
                    best[d]
                } else {
                    let mut covered: Vec<TokenId> = Vec::new();
                    let mut score = 0.0;
                    for &k in &counted[d] {
                        let mut types = keys[k].tokens.clone();
                        types.sort();
                        types.dedup();
                        let new = types.iter().filter(|t| !covered.contains(t)).count();
                        score += keys[k].weight
                            * (1.0 - settings.beta
                                + settings.beta * new as f64 / types.len() as f64);
                        covered.extend(types);
                    }
                    score
                };
                (d as DocId, score)
            })
            .collect();
        scored.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        scored.truncate(settings.num_candidates);
        scored
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn the_first_stage_picks_the_candidates_its_description_says(
            docs in arb_corpus(),
            candidates in arb_candidates(),
            rare_threshold in 0u64..5,
            max_occurrences in 1usize..6,
            num_candidates in 1usize..5,
            lm_fm in any::<bool>(),
            frequent_fallback in any::<bool>(),
        ) {
            let ranking = if lm_fm { Ranking::LmFm } else { Ranking::Intersective };
            let settings = ScoringSettings {
                rare_threshold, max_occurrences, num_candidates, ranking, frequent_fallback,
                ..seal_settings()
            };
            let corpus = NaiveCorpus::new(docs.clone()).with_separator(0);
            let s = scorer(settings.clone());
            let keys = s.keys(&corpus, &candidates, &[]);
            let expected = oracle_first_stage(&docs, 0, keys.keys(), &settings);
            let got = first_stage(&settings, &corpus, &keys);
            prop_assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                prop_assert!(g.0 == e.0 && (g.1 - e.1).abs() < 1e-9, "got {:?} expected {:?}", got, expected);
            }
            // And rank() fully scores exactly these documents.
            let mut docs_ranked: Vec<DocId> = s.rank(&corpus, &keys).iter().map(|d| d.doc).collect();
            docs_ranked.sort_unstable();
            let mut docs_expected: Vec<DocId> = expected.iter().map(|e| e.0).collect();
            docs_expected.sort_unstable();
            prop_assert_eq!(docs_ranked, docs_expected);
        }


        #[test]
        fn two_stages_equal_exhaustive_scoring_when_thresholds_are_large(
            docs in arb_corpus(),
            candidates in arb_candidates(),
            unigram in prop::collection::vec((0u32..7, -4.0f64..0.0), 0..7),
            with_separator in any::<bool>(),
            lm_fm in any::<bool>(),
        ) {
            let mut corpus = NaiveCorpus::new(docs.clone());
            if with_separator {
                corpus = corpus.with_separator(0);
            }
            let ranking = if lm_fm { Ranking::LmFm } else { Ranking::Intersective };
            let s = scorer(ScoringSettings {
                rare_threshold: u64::MAX, max_occurrences: usize::MAX, num_candidates: usize::MAX, ranking,
                ..seal_settings()
            });
            let keys = s.keys(&corpus, &candidates, &unigram);
            let ranked = s.rank(&corpus, &keys);

            // Exhaustive: every document that contains an active key, fully scored, sorted.
            let separator = corpus.separator();
            let mut expected: Vec<ScoredDoc> = (0..docs.len() as DocId)
                .filter(|&d| {
                    let seq: Vec<TokenId> = separator.into_iter().chain(docs[d as usize].iter().copied()).collect();
                    keys.keys().iter().any(|k| k.weight > 0.0 && seq.windows(k.tokens.len()).any(|w| w == &k.tokens[..]))
                })
                .map(|d| s.score_document(&keys, d, &docs[d as usize], separator))
                .collect();
            expected.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
            prop_assert_eq!(ranked, expected);
        }

        #[test]
        fn every_ranked_document_carries_its_full_score(
            docs in arb_corpus(),
            candidates in arb_candidates(),
            rare_threshold in 0u64..4,
            max_occurrences in 1usize..4,
            num_candidates in 1usize..4,
        ) {
            let corpus = NaiveCorpus::new(docs.clone()).with_separator(0);
            let s = scorer(ScoringSettings { rare_threshold, max_occurrences, num_candidates, ..seal_settings() });
            let keys = s.keys(&corpus, &candidates, &[]);
            let ranked = s.rank(&corpus, &keys);
            prop_assert!(ranked.len() <= num_candidates);
            for pair in ranked.windows(2) {
                prop_assert!(pair[0].score > pair[1].score || (pair[0].score == pair[1].score && pair[0].doc < pair[1].doc));
            }
            for d in &ranked {
                prop_assert_eq!(d, &s.score_document(&keys, d.doc, &docs[d.doc as usize], Some(0)));
            }
        }

        /// With length normalization b, intersective ranking scores the same candidates as
        /// SEAL's, each divided by `1 − b + b·len/mean_len` (mean over the whole corpus), its
        /// contributions scaled alike so that they still sum to the score, re-sorted.
        #[test]
        fn length_normalization_divides_each_full_score_by_its_pivoted_length(
            docs in arb_corpus(),
            candidates in arb_candidates(),
            b in 0.0f64..=1.0,
        ) {
            let corpus = NaiveCorpus::new(docs.clone()).with_separator(0);
            let plain = scorer(seal_settings());
            let normalized = scorer(ScoringSettings { length_norm: b, ..seal_settings() });
            let keys = plain.keys(&corpus, &candidates, &[]);
            let mean = docs.iter().map(Vec::len).sum::<usize>() as f64 / docs.len() as f64;
            let mut expected: Vec<ScoredDoc> = plain.rank(&corpus, &keys).into_iter().map(|mut d| {
                let factor = 1.0 / (1.0 - b + b * docs[d.doc as usize].len() as f64 / mean.max(1.0));
                d.score *= factor;
                d.matches.iter_mut().for_each(|m| m.contribution *= factor);
                d.unigrams.iter_mut().for_each(|u| u.contribution *= factor);
                d
            }).collect();
            expected.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
            let got = normalized.rank(&corpus, &keys);
            prop_assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                prop_assert_eq!(g.doc, e.doc);
                prop_assert!((g.score - e.score).abs() <= 1e-9 * e.score.abs().max(1.0));
                let sum: f64 = g.matches.iter().map(|m| m.contribution).sum::<f64>()
                    + g.unigrams.iter().map(|u| u.contribution).sum::<f64>();
                prop_assert!((sum - g.score).abs() <= 1e-9 * g.score.abs().max(1.0));
            }
        }
    }
}
