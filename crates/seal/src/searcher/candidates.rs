//! Candidates that need no beam search: the query's own 1-3-word spans (scored teacher-forced
//! with the body prompt) and the best tokens of the body prompt's first step (unigrams).

use crate::TokenId;
use std::collections::HashSet;

/// Every 1-3-word span of the query, each word as written or with its first letter upper-cased
/// (SEAL.md §2 "Query n-grams"), deduplicated, in order of appearance.
pub fn query_spans(query: &str) -> Vec<String> {
    let words: Vec<&str> = query.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for len in 1..=3usize {
        for start in 0..words.len().saturating_sub(len - 1) {
            let span = &words[start..start + len];
            for mask in 0..(1u32 << len) {
                let variant: Vec<String> = span
                    .iter()
                    .enumerate()
                    .map(
                        |(i, w)| if mask & (1 << i) != 0 { capitalize(w) } else { (*w).to_owned() },
                    )
                    .collect();
                let text = variant.join(" ");
                if seen.insert(text.clone()) {
                    out.push(text);
                }
            }
        }
    }
    out
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The `n` most likely tokens of a first-step distribution, as `(token, logprob)`, best first
/// (ties by token id).
pub(super) fn best_unigrams(first_step: &[f32], n: usize) -> Vec<(TokenId, f64)> {
    let mut all: Vec<(TokenId, f64)> = first_step
        .iter()
        .enumerate()
        .filter(|(_, lp)| lp.is_finite())
        .map(|(i, &lp)| (i as TokenId, f64::from(lp)))
        .collect();
    let by = |a: &(TokenId, f64), b: &(TokenId, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if all.len() > n && n > 0 {
        all.select_nth_unstable_by(n - 1, by);
        all.truncate(n);
    }
    all.sort_by(by);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_spans_cover_one_to_three_words_with_case_variants() {
        let spans = query_spans("who wrote hamlet");
        assert!(spans.contains(&"who".to_owned()));
        assert!(spans.contains(&"Hamlet".to_owned()));
        assert!(spans.contains(&"wrote Hamlet".to_owned()));
        assert!(spans.contains(&"Who Wrote Hamlet".to_owned()));
        assert!(spans.contains(&"who wrote hamlet".to_owned()));
        // 3 words × 2 + 2 spans × 4 + 1 span × 8 variants.
        assert_eq!(spans.len(), 6 + 8 + 8);
        assert_eq!(query_spans("").len(), 0);
        // Already-capitalized words give no duplicate variants.
        assert_eq!(query_spans("NASA"), vec!["NASA".to_owned()]);
    }

    #[test]
    fn best_unigrams_are_sorted_and_truncated() {
        let lp = [-3.0f32, -1.0, f32::NEG_INFINITY, -1.0, -0.5];
        assert_eq!(best_unigrams(&lp, 3), vec![(4, -0.5), (1, -1.0), (3, -1.0)]);
        assert_eq!(best_unigrams(&lp, 10).len(), 4);
    }
}
