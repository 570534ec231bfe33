//! Tests of the constrained beam search with a toy model whose log-probabilities are a known
//! function of the prefix, over FM-indexes built from small corpora.

use super::*;
use proptest::prelude::*;
use seal_index::FmIndexBuilder;
use std::collections::BTreeSet;

const VOCAB: usize = 12;
const SEP: TokenId = 11;

/// A toy language model: the next-token distribution is a fixed pseudo-random function of the
/// whole prefix (prompt + generated tokens), so scores are reproducible by hand.
struct ToyModel;

fn toy_logprobs(prefix: &[TokenId]) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in prefix {
        h = (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3);
    }
    let logits: Vec<f64> = (0..VOCAB as u64)
        .map(|v| {
            let x = (h ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            (x >> 40) as f64 / (1u64 << 24) as f64 * 4.0
        })
        .collect();
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    logits.iter().map(|l| (l - lse) as f32).collect()
}

impl BeamModel for ToyModel {
    type State = Vec<Vec<TokenId>>;
    type Rows = LogProbs;

    fn prefill(&self, prompt: &[TokenId]) -> Result<(Self::State, Vec<f32>)> {
        Ok((vec![prompt.to_vec()], toy_logprobs(prompt)))
    }

    fn step(
        &self,
        state: &mut Self::State,
        parents: &[usize],
        tokens: &[TokenId],
    ) -> Result<LogProbs> {
        let next: Vec<Vec<TokenId>> = parents
            .iter()
            .zip(tokens)
            .map(|(&p, &t)| {
                let mut s = state[p].clone();
                s.push(t);
                s
            })
            .collect();
        let data = next.iter().flat_map(|s| toy_logprobs(s)).collect();
        *state = next;
        Ok(LogProbs::new(data, VOCAB))
    }

    fn score_continuations(
        &self,
        prompt: &[TokenId],
        continuations: &[Vec<TokenId>],
    ) -> Result<Vec<Vec<f32>>> {
        Ok(continuations
            .iter()
            .map(|c| {
                (0..c.len())
                    .map(|i| {
                        let mut prefix = prompt.to_vec();
                        prefix.extend_from_slice(&c[..i]);
                        toy_logprobs(&prefix)[c[i] as usize]
                    })
                    .collect()
            })
            .collect())
    }
}

fn build(docs: &[Vec<TokenId>]) -> FmIndex {
    let mut b = FmIndexBuilder::new(SEP);
    for d in docs {
        b.push_document(d).unwrap();
    }
    b.build().unwrap()
}

fn naive_count(docs: &[Vec<TokenId>], ngram: &[TokenId]) -> u64 {
    docs.iter().map(|d| d.windows(ngram.len()).filter(|w| *w == ngram).count() as u64).sum()
}

fn teacher_forced(prompt: &[TokenId], ngram: &[TokenId]) -> f64 {
    ToyModel.score_continuations(prompt, &[ngram.to_vec()]).unwrap()[0]
        .iter()
        .map(|&x| f64::from(x))
        .sum()
}

fn docs_strategy() -> impl Strategy<Value = Vec<Vec<TokenId>>> {
    // The index needs at least one token in the corpus.
    prop::collection::vec(prop::collection::vec(0u32..(SEP - 1), 0..12), 1..6)
        .prop_filter("a corpus with a token", |docs| docs.iter().any(|d| !d.is_empty()))
}

proptest! {
    /// Every candidate occurs, has the exact count, never holds the separator, and its score is
    /// the teacher-forced log-probability of its tokens.
    #[test]
    fn body_candidates_are_exact(docs in docs_strategy(), beam in 1usize..6, prompt in prop::collection::vec(0u32..VOCAB as u32, 0..4)) {
        let index = build(&docs);
        let settings = BeamSettings { beam, max_body_tokens: 4, max_title_tokens: 6, title_prefixes: false };
        let out = constrained_beam_search(&ToyModel, &index, &prompt, &Target::Body, &settings, &|_| true).unwrap();
        for g in &out.ngrams {
            prop_assert!(g.count > 0);
            prop_assert_eq!(g.count, naive_count(&docs, &g.tokens));
            prop_assert!(!g.tokens.contains(&SEP));
            prop_assert!(g.tokens.len() <= 4);
            prop_assert!((g.logprob - teacher_forced(&prompt, &g.tokens)).abs() < 1e-4);
        }
    }

    /// With a beam wider than the corpus, decoding enumerates every distinct n-gram up to the
    /// length limit whose first token passes the filter: the constraint loses nothing.
    #[test]
    fn wide_beam_is_exhaustive(docs in docs_strategy()) {
        let index = build(&docs);
        let settings = BeamSettings { beam: 10_000, max_body_tokens: 3, max_title_tokens: 6, title_prefixes: false };
        let first_ok = |t: TokenId| t.is_multiple_of(2);
        let out = constrained_beam_search(&ToyModel, &index, &[1, 2], &Target::Body, &settings, &first_ok).unwrap();
        let got: BTreeSet<Vec<TokenId>> = out.ngrams.iter().map(|g| g.tokens.clone()).collect();
        prop_assert_eq!(got.len(), out.ngrams.len(), "duplicates generated");
        let mut want = BTreeSet::new();
        for d in &docs {
            for len in 1..=3 {
                for w in d.windows(len) {
                    if w[0].is_multiple_of(2) {
                        want.insert(w.to_vec());
                    }
                }
            }
        }
        prop_assert_eq!(got, want);
    }

    /// Title decoding yields exactly the complete titles (document prefixes ending with the
    /// delimiter), the last document's included, when the beam is wide enough.
    #[test]
    fn wide_beam_finds_every_complete_title(titles in prop::collection::vec(prop::collection::vec(0u32..5, 1..4), 1..5), bodies in prop::collection::vec(prop::collection::vec(0u32..8, 0..5), 5)) {
        const DELIM: TokenId = 9;
        let docs: Vec<Vec<TokenId>> = titles.iter().zip(&bodies).map(|(t, b)| {
            let mut d = t.clone();
            d.push(DELIM);
            d.extend_from_slice(b);
            d
        }).collect();
        let index = build(&docs);
        let settings = BeamSettings { beam: 10_000, max_body_tokens: 3, max_title_tokens: 8, title_prefixes: false };
        let target = Target::Title { delimiter: vec![DELIM], end_token: None };
        let out = constrained_beam_search(&ToyModel, &index, &[3], &target, &settings, &|_| false).unwrap();
        let got: BTreeSet<Vec<TokenId>> = out.ngrams.iter().map(|g| g.tokens.clone()).collect();
        let want: BTreeSet<Vec<TokenId>> = titles.iter().map(|t| {
            let mut k = t.clone();
            k.push(DELIM);
            k
        }).collect();
        prop_assert_eq!(got, want);
        for g in &out.ngrams {
            prop_assert!((g.logprob - teacher_forced(&[3], &g.tokens)).abs() < 1e-4);
        }
    }
}

proptest! {
    /// With title prefixes and a beam wide enough to keep everything, title decoding yields the
    /// complete titles that fit in the length limit and, for longer ones, their prefixes at the
    /// limit; each with its exact count and teacher-forced log-probability.
    #[test]
    fn wide_beam_yields_title_prefixes_at_the_limit(titles in prop::collection::vec(prop::collection::vec(0u32..3, 1..5), 1..6), max_title_tokens in 1usize..6) {
        const DELIM: TokenId = 9;
        let docs: Vec<Vec<TokenId>> = titles.iter().map(|t| [t.as_slice(), &[DELIM, 5]].concat()).collect();
        let index = build(&docs);
        let settings = BeamSettings { beam: 10_000, max_body_tokens: 3, max_title_tokens, title_prefixes: true };
        let target = Target::Title { delimiter: vec![DELIM], end_token: None };
        let out = constrained_beam_search(&ToyModel, &index, &[3], &target, &settings, &|_| false).unwrap();
        // The oracle, by scanning the titles.
        let starting = |p: &[TokenId]| titles.iter().filter(|t| t.starts_with(p)).count() as u64;
        let mut want: BTreeSet<(Vec<TokenId>, u64)> = BTreeSet::new();
        for t in &titles {
            if t.len() < max_title_tokens {
                let count = titles.iter().filter(|u| *u == t).count() as u64;
                want.insert(([t.as_slice(), &[DELIM]].concat(), count));
            } else {
                let open = &t[..max_title_tokens];
                want.insert((open.to_vec(), starting(open)));
            }
        }
        let got: Vec<(Vec<TokenId>, u64)> = out.ngrams.iter().map(|g| (g.tokens.clone(), g.count)).collect();
        let got_set: BTreeSet<_> = got.iter().cloned().collect();
        prop_assert_eq!(got.len(), got_set.len(), "no key twice");
        prop_assert_eq!(got_set, want);
        for g in &out.ngrams {
            prop_assert!((g.logprob - teacher_forced(&[3], &g.tokens)).abs() < 1e-4);
        }
    }
}

#[test]
fn beam_of_one_is_greedy_over_allowed_tokens() {
    // Corpus: 0 1 2 | 0 3 | 4. Greedy picks, at each step, the allowed token with the best
    // toy log-probability; check the first step by hand against the toy distribution.
    let docs = vec![vec![0, 1, 2], vec![0, 3], vec![4]];
    let index = build(&docs);
    let settings =
        BeamSettings { beam: 1, max_body_tokens: 3, max_title_tokens: 3, title_prefixes: false };
    let out = constrained_beam_search(&ToyModel, &index, &[7], &Target::Body, &settings, &|_| true)
        .unwrap();
    let lp = toy_logprobs(&[7]);
    let best_first = [0u32, 1, 2, 3, 4]
        .into_iter()
        .max_by(|a, b| lp[*a as usize].total_cmp(&lp[*b as usize]))
        .unwrap();
    assert_eq!(out.ngrams[0].tokens, vec![best_first]);
    assert_eq!(out.first_step, lp);
}

proptest! {
    /// The trie scorer equals scoring every n-gram on its own.
    #[test]
    fn trie_scoring_equals_one_by_one(ngrams in prop::collection::vec(prop::collection::vec(0u32..4, 0..5), 0..12), prompt in prop::collection::vec(0u32..VOCAB as u32, 0..3)) {
        let got = score_ngrams(&ToyModel, &prompt, &ngrams).unwrap();
        for (g, s) in ngrams.iter().zip(&got) {
            prop_assert!((s - teacher_forced(&prompt, g)).abs() < 1e-4, "{:?}: {} vs {}", g, s, teacher_forced(&prompt, g));
        }
    }
}

/// With an end token, a complete title is scored as its title tokens plus the end token's
/// log-probability in place of the delimiter's; the rest of a multi-token delimiter is free.
#[test]
fn title_end_token_stands_in_for_the_delimiter() {
    const D1: TokenId = 8;
    const D2: TokenId = 9;
    const END: TokenId = 10;
    let docs = vec![vec![1, 2, D1, D2, 5, 6], vec![3, D1, D2, 4]];
    let index = build(&docs);
    let settings =
        BeamSettings { beam: 100, max_body_tokens: 3, max_title_tokens: 6, title_prefixes: false };
    let target = Target::Title { delimiter: vec![D1, D2], end_token: Some(END) };
    let out =
        constrained_beam_search(&ToyModel, &index, &[0], &target, &settings, &|_| false).unwrap();
    let got: BTreeSet<Vec<TokenId>> = out.ngrams.iter().map(|g| g.tokens.clone()).collect();
    assert_eq!(got, BTreeSet::from([vec![1, 2, D1, D2], vec![3, D1, D2]]));
    for g in &out.ngrams {
        let title = &g.tokens[..g.tokens.len() - 2];
        let mut with_end = title.to_vec();
        with_end.push(END);
        let want = teacher_forced(&[0], &with_end);
        assert!((g.logprob - want).abs() < 1e-4, "{:?}: {} vs {}", g.tokens, g.logprob, want);
    }
}
